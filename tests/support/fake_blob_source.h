// In-memory cache::BlobSource fakes for unit tests.
//
// InMemoryBlobSource serves one blob whatever digest is asked for, counts range requests and
// can be told to fail them: enough for the TOC readers, which fetch a footer and a TOC.
// SingleBlobSource serves one blob under its own sha256 digest only; tests derive from it
// and wrap AppendRange with their own counting and fault injection (delays, flipped bits).
//
// Ownership: each source owns a copy of its blob. Thread-safety: the counters are atomic and
// the blob is read-only, but `fail` must be set before the source is shared between threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cache/blob_source.h"

namespace imgfs::test {

class InMemoryBlobSource : public cache::BlobSource {
 public:
  explicit InMemoryBlobSource(std::string blob) : blob_(std::move(blob)) {}

  // Counts the request; then `fail` if set, kInvalidArgument for a range outside the blob.
  Status ReadRange(std::string_view digest, uint64_t offset, uint64_t length,
                   std::string* out) override;
  Status ReadAll(std::string_view digest,
                 const std::function<Status(std::string_view)>& sink) override;

  std::atomic<int> range_requests{0};
  Status fail;  // returned by every ReadRange when not OK

 private:
  const std::string blob_;
};

class SingleBlobSource : public cache::BlobSource {
 public:
  explicit SingleBlobSource(std::string blob);

  // kNotFound for any digest but digest().
  Status ReadAll(std::string_view digest,
                 const std::function<Status(std::string_view)>& sink) override;

  const std::string& digest() const { return digest_; }
  const std::string& blob() const { return blob_; }

 protected:
  // Appends the `length` bytes at `offset` to `*out`; kNotFound ("no such range") when
  // `digest` is not this blob's or the range runs past its end.
  Status AppendRange(std::string_view digest, uint64_t offset, uint64_t length,
                     std::string* out) const;

 private:
  const std::string blob_;
  const std::string digest_;
};

}  // namespace imgfs::test
