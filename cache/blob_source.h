// BlobSource: where the cache gets bytes it does not have.
//
// The cache knows blobs only by digest; `registry` implements this interface for one
// repository and `cli` wires the two together, so neither module knows the other. Tests
// implement it to inject faults (flipped bits, short reads, errors).
//
// Implementations are safe for concurrent use from many threads. They do not verify: the
// cache checks every byte against a trusted digest before it keeps or returns it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::cache {

class BlobSource {
 public:
  virtual ~BlobSource() = default;

  // Appends exactly `length` bytes at `offset` of blob `digest` to `*out`, or fails.
  // Errors: kNotFound (no such blob), kUnauthorized, kUnavailable (retrying may help).
  virtual Status ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                           std::string* out) = 0;

  // Streams the whole blob in order through `sink`; a non-OK Status from `sink` stops the
  // stream and is returned.
  virtual Status ReadAll(std::string_view digest,
                         const std::function<Status(std::string_view)>& sink) = 0;
};

}  // namespace imgfs::cache
