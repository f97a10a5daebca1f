// RAII owners of zlib and zstd (de)compression state, so that no return or exception between
// init and end leaks a z_stream's window or a ZSTD_DCtx.
//
//   InflateStream zs;
//   IMGFS_RETURN_IF_ERROR(zs.Init(15 + 16));  // gzip
//   zs->next_in = ...; inflate(zs.get(), Z_NO_FLUSH);
//
// Thread-safety: one object belongs to one thread at a time.
#pragma once

#include <zlib.h>
#include <zstd.h>

#include <memory>
#include <string>

#include "base/status.h"

namespace imgfs::fs {

class InflateStream {
 public:
  InflateStream() = default;
  ~InflateStream() {
    if (initialized_) inflateEnd(&zs_);
  }
  InflateStream(const InflateStream&) = delete;
  InflateStream& operator=(const InflateStream&) = delete;

  // inflateInit2 with `window_bits` (15 + 16: gzip, -15: raw deflate, 15: zlib).
  // REQUIRES: not initialized yet.
  Status Init(int window_bits) {
    if (initialized_) return Status::Internal("InflateStream initialized twice");
    if (inflateInit2(&zs_, window_bits) != Z_OK) return Status::Internal("inflateInit2 failed");
    initialized_ = true;
    return Status::Ok();
  }

  z_stream* get() { return &zs_; }
  z_stream* operator->() { return &zs_; }

 private:
  z_stream zs_{};
  bool initialized_ = false;
};

struct ZstdDCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};
using ZstdDCtxPtr = std::unique_ptr<ZSTD_DCtx, ZstdDCtxFree>;

struct ZstdCCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
using ZstdCCtxPtr = std::unique_ptr<ZSTD_CCtx, ZstdCCtxFree>;

}  // namespace imgfs::fs
