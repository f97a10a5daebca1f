// Content digests: the "sha256:<64 hex>" strings of the OCI spec, and an incremental SHA-256.
//
// Only sha256 is accepted (sha512 digests are valid OCI but no registry in use serves them;
// they get kUnsupported, not a wrong answer). Sha256 is not thread-safe; one per stream.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs {

// Checks that `digest` is "sha256:" + 64 lowercase hex characters.
Status ValidateDigest(std::string_view digest);

// The 64 hex characters of a valid digest. REQUIRES: ValidateDigest(digest).ok()
std::string_view DigestHex(std::string_view digest);

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  void Update(const void* data, size_t len);
  // "sha256:<hex>". The hasher must not be used afterwards.
  std::string FinishDigest();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "sha256:<hex>" of `bytes`.
std::string Sha256Digest(std::string_view bytes);

}  // namespace imgfs
