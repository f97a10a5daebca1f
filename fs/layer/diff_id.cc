#include "fs/layer/diff_id.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>

#include "base/digest.h"
#include "fs/layer/zlib_stream.h"

namespace imgfs::fs {
namespace {

constexpr size_t kOutBytes = 256 << 10;

// What the decoders share: the hash of the output and its bound.
class HasherBase : public DiffIdHasher {
 public:
  explicit HasherBase(uint64_t max_decoded) : max_decoded_(max_decoded) {}

 protected:
  Status Out(const char* data, size_t n) {
    decoded_ += n;
    if (decoded_ > max_decoded_) {
      return Status::Corrupt("the layer decodes to more than " + std::to_string(max_decoded_) +
                             " bytes");
    }
    hash_.Update(data, n);
    return Status::Ok();
  }
  // Remembers the first error: a hasher that failed stays failed.
  Status Fail(Status s) {
    if (error_.ok()) error_ = s;
    return error_;
  }

  Sha256 hash_;
  Status error_;
  uint64_t decoded_ = 0;
  const uint64_t max_decoded_;
};

class RawHasher : public HasherBase {
 public:
  using HasherBase::HasherBase;
  Status Feed(std::string_view bytes) override {
    if (!error_.ok()) return error_;
    if (Status s = Out(bytes.data(), bytes.size()); !s.ok()) return Fail(s);
    return Status::Ok();
  }
  Result<std::string> Finish() override {
    if (!error_.ok()) return error_;
    return hash_.FinishDigest();
  }
};

// Gzip members one after the other, as Go's gzip.Reader (multistream) reads them.
class GzipHasher : public HasherBase {
 public:
  using HasherBase::HasherBase;

  Status Feed(std::string_view bytes) override {
    if (!error_.ok()) return error_;
    if (!initialized_) {
      if (Status s = stream_.Init(15 + 16); !s.ok()) return Fail(s);
      initialized_ = true;
    }
    z_stream& zs = *stream_.get();
    while (!bytes.empty()) {
      if (between_members_) {
        if (inflateReset(&zs) != Z_OK) return Fail(Status::Internal("inflateReset failed"));
        between_members_ = false;
      }
      size_t in = std::min<size_t>(bytes.size(), UINT32_MAX);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
      zs.avail_in = static_cast<uInt>(in);
      zs.next_out = reinterpret_cast<Bytef*>(out_);
      zs.avail_out = sizeof out_;
      int rc = inflate(&zs, Z_NO_FLUSH);
      const size_t used = in - zs.avail_in, made = sizeof out_ - zs.avail_out;
      bytes.remove_prefix(used);
      if (Status s = Out(out_, made); !s.ok()) return Fail(s);
      if (used == 0 && made == 0 && rc != Z_STREAM_END) {
        return Fail(Status::Corrupt("the gzip stream does not inflate"));
      }
      if (rc == Z_STREAM_END) {
        between_members_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return Fail(Status::Corrupt(std::string("the gzip stream does not inflate: ") +
                                    (zs.msg != nullptr ? zs.msg : "zlib error")));
      }
    }
    return Status::Ok();
  }

  Result<std::string> Finish() override {
    if (!error_.ok()) return error_;
    if (initialized_ && !between_members_) {
      return Status::Corrupt("the blob ends inside a gzip member");
    }
    if (!initialized_) return Status::Corrupt("the blob is empty, not gzip");
    return hash_.FinishDigest();
  }

 private:
  InflateStream stream_;
  bool initialized_ = false;
  bool between_members_ = false;
  char out_[kOutBytes];
};

class ZstdHasher : public HasherBase {
 public:
  using HasherBase::HasherBase;

  Status Feed(std::string_view bytes) override {
    if (!error_.ok()) return error_;
    if (!dctx_) {
      dctx_.reset(ZSTD_createDCtx());
      if (!dctx_) return Fail(Status::Internal("ZSTD_createDCtx failed"));
    }
    ZSTD_inBuffer in{bytes.data(), bytes.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer out{out_, sizeof out_, 0};
      size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in);
      if (ZSTD_isError(rc)) {
        return Fail(Status::Corrupt(std::string("the zstd stream does not decode: ") +
                                    ZSTD_getErrorName(rc)));
      }
      if (Status s = Out(out_, out.pos); !s.ok()) return Fail(s);
      at_frame_end_ = rc == 0;
    }
    return Status::Ok();
  }

  Result<std::string> Finish() override {
    if (!error_.ok()) return error_;
    if (!dctx_) return Status::Corrupt("the blob is empty, not zstd");
    // Output the decoder still holds, when the last input filled the output buffer. (Asked
    // again after a frame's end, the decoder would announce the next frame's header.)
    while (!at_frame_end_) {
      ZSTD_inBuffer in{nullptr, 0, 0};
      ZSTD_outBuffer out{out_, sizeof out_, 0};
      size_t rc = ZSTD_decompressStream(dctx_.get(), &out, &in);
      if (ZSTD_isError(rc)) {
        return Status::Corrupt(std::string("the zstd stream does not decode: ") +
                               ZSTD_getErrorName(rc));
      }
      IMGFS_RETURN_IF_ERROR(Out(out_, out.pos));
      at_frame_end_ = rc == 0;
      if (out.pos < out.size) break;
    }
    if (!at_frame_end_) return Status::Corrupt("the blob ends inside a zstd frame");
    return hash_.FinishDigest();
  }

 private:
  ZstdDCtxPtr dctx_;
  bool at_frame_end_ = false;
  char out_[kOutBytes];
};

}  // namespace

Result<std::unique_ptr<DiffIdHasher>> DiffIdHasher::Create(std::string_view format,
                                                           uint64_t max_decoded) {
  if (format == "tar") return std::unique_ptr<DiffIdHasher>(new RawHasher(max_decoded));
  if (format == "gzip" || format == "estargz") {
    return std::unique_ptr<DiffIdHasher>(new GzipHasher(max_decoded));
  }
  if (format == "zstd:chunked") return std::unique_ptr<DiffIdHasher>(new ZstdHasher(max_decoded));
  return Status::Unsupported("no diff_id can be computed for layer format '" + std::string(format) +
                             "'");
}

}  // namespace imgfs::fs
