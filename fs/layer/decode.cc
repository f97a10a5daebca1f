#include "fs/layer/decode.h"

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>

#include "base/blob_source.h"
#include "base/buffer_pool.h"
#include "fs/layer/zlib_stream.h"

namespace imgfs::fs {
namespace {

constexpr int kGzipWindowBits = 15 + 16;
constexpr int kRawWindowBits = -15;

bool IsGzipMagic(std::string_view in) {
  return in.size() >= 2 && static_cast<uint8_t>(in[0]) == 0x1f &&
         static_cast<uint8_t>(in[1]) == 0x8b;
}

Status Corrupt(const Unit& unit, const std::string& what) {
  return Status::Corrupt("unit at compressed offset " + std::to_string(unit.coff) + ": " + what);
}

// Inflates `in` into `out` (sized unit.ulen) starting from a prepared stream. Continues across
// gzip members: when a member ends, its trailer (raw mode: the 8 bytes zlib did not read) is
// skipped and the next member's header parsed. Zero padding after a member ends the data.
Status InflateSpan(const Unit& unit, z_stream* zs, bool raw, std::string_view in, std::string* out,
                   bool whole = false) {
  size_t pos = 0;      // bytes of `in` handed to zlib so far
  size_t done = 0;     // bytes of `out` filled
  bool ended = false;  // the member in which `out` filled up ended (trailer checked)
  zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs->avail_in = 0;
  while (done < out->size()) {
    if (zs->avail_in == 0 && pos < in.size()) {
      size_t n = std::min<size_t>(in.size() - pos, std::numeric_limits<uInt>::max());
      zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
      zs->avail_in = static_cast<uInt>(n);
      pos += n;
    }
    size_t want = std::min<size_t>(out->size() - done, std::numeric_limits<uInt>::max());
    zs->next_out = reinterpret_cast<Bytef*>(out->data() + done);
    zs->avail_out = static_cast<uInt>(want);
    int rc = inflate(zs, Z_NO_FLUSH);
    done += want - zs->avail_out;
    if (rc == Z_STREAM_END) {
      if (done == out->size()) {
        ended = true;
        break;
      }
      size_t next = pos - zs->avail_in;  // offset in `in` just past the member's data
      if (raw) next += 8;                // gzip trailer: CRC32 + ISIZE
      if (next >= in.size() || !IsGzipMagic(in.substr(next))) {
        return Corrupt(unit, "compressed data ends " + std::to_string(out->size() - done) +
                                 " bytes short of the unit's length");
      }
      if (inflateReset2(zs, kGzipWindowBits) != Z_OK) return Corrupt(unit, "inflateReset2");
      raw = false;
      zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + next));
      size_t n = std::min<size_t>(in.size() - next, std::numeric_limits<uInt>::max());
      zs->avail_in = static_cast<uInt>(n);
      pos = next + n;
      continue;
    }
    if (rc == Z_BUF_ERROR && zs->avail_in == 0 && pos >= in.size()) {
      return Corrupt(unit, "compressed data ends " + std::to_string(out->size() - done) +
                               " bytes short of the unit's length");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      return Corrupt(unit, std::string("inflate: ") + (zs->msg ? zs->msg : "error"));
    }
  }
  // The member must end right here, so that zlib reads and checks its CRC32 and length.
  while (whole && !ended) {
    if (zs->avail_in == 0 && pos < in.size()) {
      size_t n = std::min<size_t>(in.size() - pos, std::numeric_limits<uInt>::max());
      zs->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
      zs->avail_in = static_cast<uInt>(n);
      pos += n;
    }
    Bytef extra;
    zs->next_out = &extra;
    zs->avail_out = 1;
    int rc = inflate(zs, Z_NO_FLUSH);
    if (zs->avail_out == 0) return Corrupt(unit, "decodes to more than the unit's length");
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) {
      return Corrupt(unit, std::string("gzip member does not end where the unit does: ") +
                               (zs->msg ? zs->msg : "its data ends early"));
    }
  }
  return Status::Ok();
}

Result<std::string> DecodeZran(const Unit& unit, std::string_view in) {
  InflateStream zs;
  std::string out = UnitBuffers().Take(unit.ulen);
  if (unit.ulen == 0) return out;
  if (unit.at_member_start) {
    IMGFS_RETURN_IF_ERROR(zs.Init(kGzipWindowBits));
    IMGFS_RETURN_IF_ERROR(InflateSpan(unit, zs.get(), /*raw=*/false, in, &out));
    return out;
  }
  IMGFS_RETURN_IF_ERROR(zs.Init(kRawWindowBits));
  if (unit.bits != 0) {
    if (in.empty()) return Corrupt(unit, "empty range with a bit offset");
    int byte = static_cast<uint8_t>(in[0]);
    if (inflatePrime(zs.get(), unit.bits, byte >> (8 - unit.bits)) != Z_OK) {
      return Corrupt(unit, "inflatePrime");
    }
    in.remove_prefix(1);
  }
  std::string scratch;
  IMGFS_ASSIGN_OR_RETURN(std::string_view window, UnitWindow(unit, &scratch));
  if (!window.empty() &&
      inflateSetDictionary(zs.get(), reinterpret_cast<const Bytef*>(window.data()),
                           static_cast<uInt>(window.size())) != Z_OK) {
    return Corrupt(unit, "inflateSetDictionary");
  }
  IMGFS_RETURN_IF_ERROR(InflateSpan(unit, zs.get(), /*raw=*/true, in, &out));
  return out;
}

struct DecompressorDeleter {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// libdeflate inflates a whole gzip member about twice as fast as zlib and checks the member's
// CRC32 (folded, with carry-less multiplication, where zlib 1.2.13 is byte-wise) and ISIZE.
// It needs room for the member's whole decoded size, so it fits units of whole members (eStargz:
// one or more members per unit), not zran spans, which start and end anywhere. It decodes
// member by member into `out`; false (nothing claimed, the caller decodes again with zlib,
// which also says what is wrong) for a member that runs past the unit's end, damaged data,
// padding, or input that ends before `out` is full. True: `out` is filled and every member
// that went into it ended and was checked.
bool InflateWholeMembers(std::string_view in, std::string* out) {
  thread_local std::unique_ptr<libdeflate_decompressor, DecompressorDeleter> decompressor(
      libdeflate_alloc_decompressor());
  if (!decompressor) return false;
  size_t pos = 0;
  size_t done = 0;
  do {
    if (!IsGzipMagic(in.substr(pos))) return false;
    size_t used_in = 0;
    size_t used_out = 0;
    libdeflate_result rc = libdeflate_gzip_decompress_ex(decompressor.get(), in.data() + pos,
                                                         in.size() - pos, out->data() + done,
                                                         out->size() - done, &used_in, &used_out);
    if (rc != LIBDEFLATE_SUCCESS || used_in == 0) return false;
    pos += used_in;
    done += used_out;
  } while (done < out->size());
  return true;
}

Result<std::string> DecodeGzipMember(const Unit& unit, std::string_view in, bool whole) {
  std::string out = UnitBuffers().Take(unit.ulen);
  if (unit.ulen == 0 && !whole) return out;
  if (InflateWholeMembers(in, &out)) return out;
  InflateStream zs;
  IMGFS_RETURN_IF_ERROR(zs.Init(kGzipWindowBits));
  IMGFS_RETURN_IF_ERROR(InflateSpan(unit, zs.get(), /*raw=*/false, in, &out, whole));
  return out;
}

Result<std::string> DecodeZstd(const Unit& unit, std::string_view in, bool whole) {
  // One context per thread, reset per unit: a fresh one is ~160 KiB, allocated and faulted in
  // again for every unit otherwise. A context that grew window buffers (a frame decoded in
  // streaming mode) is not kept: every loop thread holding MiBs would raise the daemon's RSS.
  constexpr size_t kKeptContextBytes = 512 << 10;
  thread_local ZstdDCtxPtr dctx;
  if (!dctx || ZSTD_sizeof_DCtx(dctx.get()) > kKeptContextBytes) dctx.reset(ZSTD_createDCtx());
  if (!dctx) return Status::Internal("ZSTD_createDCtx failed");
  size_t reset = ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
  if (ZSTD_isError(reset)) {
    return Status::Internal(std::string("ZSTD_DCtx_reset: ") + ZSTD_getErrorName(reset));
  }
  std::string out = UnitBuffers().Take(unit.ulen);
  // Whole frames that decode to exactly the unit, checksums checked: in one call, which uses
  // `out` as the window. The streaming API below allocates a window of its own per call, up
  // to the frame's size (a second copy of every unit decoded at once). Anything else (more
  // or fewer bytes, bytes after the frames, damage) takes the streaming path, which stops at
  // the unit's length when `whole` is false and says what is wrong.
  const size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), in.data(), in.size());
  if (!ZSTD_isError(n) && n == out.size()) return out;
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  ZSTD_inBuffer ib{in.data(), in.size(), 0};
  ZSTD_outBuffer ob{out.data(), out.size(), 0};
  size_t rc = 1;  // 0 once a frame is decoded, checked and flushed
  while (ob.pos < ob.size) {
    size_t before_in = ib.pos, before_out = ob.pos;
    rc = ZSTD_decompressStream(dctx.get(), &ob, &ib);
    if (ZSTD_isError(rc)) {
      return Corrupt(unit, std::string("zstd: ") + ZSTD_getErrorName(rc));
    }
    if (ib.pos == ib.size && ob.pos == before_out && ib.pos == before_in) {
      return Corrupt(unit, "zstd data ends " + std::to_string(ob.size - ob.pos) +
                               " bytes short of the unit's length");
    }
  }
  // The frame must end right here, so that zstd reads and checks its content checksum.
  while (whole && rc != 0) {
    char extra;
    ZSTD_outBuffer xb{&extra, 1, 0};
    size_t before_in = ib.pos;
    rc = ZSTD_decompressStream(dctx.get(), &xb, &ib);
    if (ZSTD_isError(rc)) return Corrupt(unit, std::string("zstd: ") + ZSTD_getErrorName(rc));
    if (xb.pos != 0) return Corrupt(unit, "decodes to more than the unit's length");
    if (rc != 0 && ib.pos == before_in) {
      return Corrupt(unit, "zstd frame does not end where the unit does");
    }
  }
  if (ZSTD_sizeof_DCtx(dctx.get()) > kKeptContextBytes) dctx.reset();
  return out;
}

Result<std::string> DecodeUnitImpl(const Unit& unit, std::string_view compressed, bool whole) {
  if (compressed.size() != unit.clen) {
    return Status::Internal("DecodeUnit: got " + std::to_string(compressed.size()) +
                            " bytes for a unit of " + std::to_string(unit.clen));
  }
  if (unit.ulen > kMaxUnitBytes) {
    return Corrupt(unit, "decodes to " + std::to_string(unit.ulen) +
                             " bytes, more than the limit of " + std::to_string(kMaxUnitBytes));
  }
  switch (unit.codec) {
    case UnitCodec::kRaw:
      if (unit.ulen != unit.clen) return Corrupt(unit, "raw unit with ulen != clen");
      return std::string(compressed);
    case UnitCodec::kZran:
      return DecodeZran(unit, compressed);
    case UnitCodec::kGzipMember:
      return DecodeGzipMember(unit, compressed, whole);
    case UnitCodec::kZstdFrame:
      return DecodeZstd(unit, compressed, whole);
  }
  return Corrupt(unit, "unknown codec");
}

}  // namespace

bool DecodeChecksItself(const Unit& unit, std::string_view compressed) {
  switch (unit.codec) {
    case UnitCodec::kGzipMember:
      return true;
    case UnitCodec::kZstdFrame: {
      // RFC 8878: magic 28 B5 2F FD, then the frame header descriptor, whose bit 2 is the
      // Content_Checksum_flag.
      static constexpr unsigned char kMagic[4] = {0x28, 0xb5, 0x2f, 0xfd};
      return compressed.size() >= 5 && std::memcmp(compressed.data(), kMagic, 4) == 0 &&
             (static_cast<uint8_t>(compressed[4]) & 0x04) != 0;
    }
    case UnitCodec::kRaw:
    case UnitCodec::kZran:
      return false;
  }
  return false;
}

Result<std::string> DecodeUnit(const Unit& unit, std::string_view compressed) {
  return DecodeUnitImpl(unit, compressed, /*whole=*/false);
}

Result<std::string> DecodeUnitChecked(const Unit& unit, std::string_view compressed) {
  if (!DecodeChecksItself(unit, compressed)) {
    return Status::Internal("DecodeUnitChecked: the unit's bytes carry no checksum");
  }
  return DecodeUnitImpl(unit, compressed, /*whole=*/true);
}

}  // namespace imgfs::fs
