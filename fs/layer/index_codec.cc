#include "fs/layer/index_codec.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>

#include "fs/layer/zlib_stream.h"

namespace imgfs::fs::index_codec {
namespace {

constexpr uint64_t kMaxDeflateRatio = 1032;
// What a zstd frame of an index is allowed to expand by (as a shared index's,
// fs/layer/shared_index.h): zstd has no hard bound, and a stated size beyond it is refused
// before it is allocated.
constexpr uint64_t kMaxZstdRatio = 32768;
constexpr int kZstdLevel = 3;

// Decodes exactly one zstd frame stating `len` into `out`.
bool DecodeOneFrame(std::string_view frame, uint64_t len, char* out) {
  unsigned long long stated = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (stated != len || ZSTD_findFrameCompressedSize(frame.data(), frame.size()) != frame.size()) {
    return false;
  }
  thread_local ZstdDCtxPtr dctx(ZSTD_createDCtx());
  if (dctx == nullptr) return false;
  size_t n = ZSTD_decompressDCtx(dctx.get(), out, len, frame.data(), frame.size());
  return !ZSTD_isError(n) && n == len;
}

}  // namespace

bool AppendZstdFrame(std::string_view raw, std::string* out) {
  const size_t head = out->size();
  out->resize(head + ZSTD_compressBound(raw.size()));
  thread_local ZstdCCtxPtr cctx(ZSTD_createCCtx());
  bool ok = cctx != nullptr &&
            !ZSTD_isError(ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters)) &&
            !ZSTD_isError(
                ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, kZstdLevel)) &&
            !ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1));
  size_t n = ok ? ZSTD_compress2(cctx.get(), out->data() + head, out->size() - head, raw.data(),
                                 raw.size())
                : 0;
  ok = ok && !ZSTD_isError(n);
  out->resize(ok ? head + n : head);
  return ok;
}

Status DecompressZstdBody(std::string_view compressed, uint64_t body_len, char* body) {
  if (body_len > compressed.size() * kMaxZstdRatio) {
    return Status::Corrupt("layer index: stated size exceeds what its compressed body holds");
  }
  if (!DecodeOneFrame(compressed, body_len, body)) {
    return Status::Corrupt("layer index: compressed body is damaged");
  }
  return Status::Ok();
}

Status InflateBody(std::string_view compressed, uint64_t body_len, char* body) {
  // Deflate expands by at most 1032:1: a larger stated size is a lie that must not be
  // allocated (a damaged header would otherwise cost up to kMaxBodyLen of memory).
  if (body_len > compressed.size() * kMaxDeflateRatio) {
    return Status::Corrupt("layer index: stated size exceeds what its compressed body holds");
  }
  InflateStream stream;
  IMGFS_RETURN_IF_ERROR(stream.Init(MAX_WBITS).WithContext("layer index"));
  z_stream& zs = *stream.get();
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(compressed.size(), UINT32_MAX));
  zs.next_out = reinterpret_cast<Bytef*>(body);
  zs.avail_out = static_cast<uInt>(body_len);
  int rc = inflate(&zs, Z_FINISH);
  bool exact = rc == Z_STREAM_END && zs.total_out == body_len && zs.avail_in == 0 &&
               compressed.size() <= UINT32_MAX;
  if (!exact) return Status::Corrupt("layer index: compressed body is damaged");
  return Status::Ok();
}

bool IsWindowFrame(std::string_view frame) {
  unsigned long long stated = ZSTD_getFrameContentSize(frame.data(), frame.size());
  return stated <= kMaxWindow &&  // also excludes ZSTD_CONTENTSIZE_UNKNOWN and _ERROR
         ZSTD_findFrameCompressedSize(frame.data(), frame.size()) == frame.size();
}

Status DecodeWindowFrame(std::string_view frame, std::string* out) {
  unsigned long long stated = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (stated > kMaxWindow) return Status::Corrupt("zran window: not a window frame");
  out->resize(stated);
  if (!DecodeOneFrame(frame, stated, out->data())) {
    out->clear();
    return Status::Corrupt("zran window: stored frame is damaged");
  }
  return Status::Ok();
}

}  // namespace imgfs::fs::index_codec
