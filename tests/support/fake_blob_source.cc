#include "tests/support/fake_blob_source.h"

#include "base/digest.h"

namespace imgfs::test {

Status InMemoryBlobSource::ReadRange(std::string_view /*digest*/, uint64_t offset,
                                     uint64_t length, std::string* out) {
  ++range_requests;
  if (!fail.ok()) return fail;
  if (offset > blob_.size() || length > blob_.size() - offset) {
    return Status::InvalidArgument("range outside the blob");
  }
  out->append(blob_, offset, length);
  return Status::Ok();
}

Status InMemoryBlobSource::ReadAll(std::string_view /*digest*/,
                                   const std::function<Status(std::string_view)>& sink) {
  return sink(blob_);
}

SingleBlobSource::SingleBlobSource(std::string blob)
    : blob_(std::move(blob)), digest_(Sha256Digest(blob_)) {}

Status SingleBlobSource::ReadAll(std::string_view digest,
                                 const std::function<Status(std::string_view)>& sink) {
  if (digest != digest_) return Status::NotFound("no such blob");
  return sink(blob_);
}

Status SingleBlobSource::AppendRange(std::string_view digest, uint64_t offset, uint64_t length,
                                     std::string* out) const {
  if (digest != digest_ || offset + length > blob_.size()) {
    return Status::NotFound("no such range");
  }
  out->append(blob_, offset, length);
  return Status::Ok();
}

}  // namespace imgfs::test
