// BlobSource: where blob bytes come from when imgfs does not have them.
//
// The cache and the layer indexers know blobs only by digest; `registry` implements this
// interface for one repository (cli/registry_blob_source.h) and `cli` wires it to them, so
// `cache` and `registry` never know each other. It lives in base/ because both sides of that
// seam must see it. Tests implement it to inject faults (flipped bits, short reads, errors).
//
// Implementations are safe for concurrent use from many threads. They do not verify: the
// cache checks every byte against a trusted digest before it keeps or returns it.
//
// kMaxUnitBytes is the largest piece of a blob that imgfs reads or decodes in one go (a unit,
// compressed or decoded: units are held whole in memory). Indexes refuse larger units and the
// cache refuses requests for them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs {

inline constexpr uint64_t kMaxUnitBytes = uint64_t{512} << 20;

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

}  // namespace imgfs
