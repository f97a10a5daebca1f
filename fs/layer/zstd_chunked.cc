#include "fs/layer/zstd_chunked.h"

#include <zstd.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <string>

#include "base/digest.h"
#include "fs/layer/toc.h"

namespace imgfs::fs {
namespace {

constexpr uint32_t kSkippableFrameMagic = 0x184D2A50;
constexpr uint64_t kSkippableHeaderSize = 8;
// The footer frame's payload: 64 bytes (containers/storage) or 40 (older writers and
// stargz-snapshotter), both ending with the 8-byte magic. The case of the second letter
// differs between the two producers.
constexpr std::string_view kFooterMagicA = "GNUlInUx";
constexpr std::string_view kFooterMagicB = "GnUlInUx";

uint64_t Le64(std::string_view p, size_t i) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(p[i + k]);
  return v;
}

uint32_t Le32(std::string_view p, size_t i) {
  uint32_t v = 0;
  for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<uint8_t>(p[i + k]);
  return v;
}

const std::string* FindAnnotation(const LayerDescriptor& layer, std::string_view key,
                                  std::string_view legacy_key) {
  auto it = layer.annotations.find(std::string(key));
  if (it != layer.annotations.end()) return &it->second;
  it = layer.annotations.find(std::string(legacy_key));
  if (it != layer.annotations.end()) return &it->second;
  return nullptr;
}

Result<std::string> DecompressToc(std::string_view in, uint64_t max_out) {
  std::unique_ptr<ZSTD_DStream, size_t (*)(ZSTD_DStream*)> ds(ZSTD_createDStream(),
                                                              ZSTD_freeDStream);
  if (!ds) return Status::Internal("ZSTD_createDStream failed");
  ZSTD_initDStream(ds.get());
  std::string out;
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  while (true) {
    if (out.size() > max_out) {
      return Status::Corrupt("decompresses to more than " + std::to_string(max_out) + " bytes");
    }
    size_t old = out.size();
    size_t in_before = input.pos;
    out.resize(old + (256u << 10));
    ZSTD_outBuffer output{out.data() + old, 256u << 10, 0};
    size_t r = ZSTD_decompressStream(ds.get(), &output, &input);
    out.resize(old + output.pos);
    if (ZSTD_isError(r)) {
      return Status::Corrupt(std::string("bad zstd data: ") + ZSTD_getErrorName(r));
    }
    if (r == 0 && input.pos == input.size) break;  // last frame complete and flushed
    if (output.pos == 0 && input.pos == in_before) {
      return Status::Corrupt("zstd stream is truncated");
    }
  }
  if (out.size() > max_out) {
    return Status::Corrupt("decompresses to more than " + std::to_string(max_out) + " bytes");
  }
  return out;
}

}  // namespace

bool IsZstdChunkedLayer(const LayerDescriptor& layer) {
  return FindAnnotation(layer, kZstdChunkedChecksumAnnotation,
                        kZstdChunkedLegacyChecksumAnnotation) != nullptr;
}

Result<ZstdChunkedTocPosition> ParseZstdChunkedPosition(std::string_view annotation) {
  uint64_t fields[4];
  std::string_view rest = annotation;
  for (int i = 0; i < 4; ++i) {
    size_t colon = rest.find(':');
    std::string_view part = i < 3 ? rest.substr(0, colon) : rest;
    if ((i < 3 && colon == std::string_view::npos) || part.empty()) {
      return Status::Corrupt("zstd:chunked manifest position \"" + std::string(annotation) +
                             "\" is not offset:length:ulength:type");
    }
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), fields[i]);
    if (ec != std::errc() || ptr != part.data() + part.size()) {
      return Status::Corrupt("zstd:chunked manifest position \"" + std::string(annotation) +
                             "\" is not offset:length:ulength:type");
    }
    if (i < 3) rest.remove_prefix(colon + 1);
  }
  if (fields[3] != 1) {
    return Status::Unsupported("zstd:chunked manifest type " + std::to_string(fields[3]) +
                               " is not supported (only 1)");
  }
  return ZstdChunkedTocPosition{fields[0], fields[1], fields[2]};
}

Result<ZstdChunkedTocPosition> ParseZstdChunkedFooter(std::string_view tail) {
  for (uint64_t payload : {uint64_t{64}, uint64_t{40}}) {
    uint64_t frame = kSkippableHeaderSize + payload;
    if (tail.size() < frame) continue;
    std::string_view f = tail.substr(tail.size() - frame);
    std::string_view magic = f.substr(frame - 8);
    if (Le32(f, 0) != kSkippableFrameMagic || Le32(f, 4) != payload ||
        (magic != kFooterMagicA && magic != kFooterMagicB)) {
      continue;
    }
    std::string_view p = f.substr(kSkippableHeaderSize);
    if (Le64(p, 24) != 1) {
      return Status::Unsupported("zstd:chunked manifest type " + std::to_string(Le64(p, 24)) +
                                 " is not supported (only 1)");
    }
    return ZstdChunkedTocPosition{Le64(p, 0), Le64(p, 8), Le64(p, 16)};
  }
  return Status::Corrupt("no zstd:chunked footer at the end of the blob");
}

Result<std::string> DecompressZstdChunkedToc(std::string_view compressed,
                                             uint64_t uncompressed_length) {
  uint64_t cap = uncompressed_length != 0 ? uncompressed_length : kMaxTocJsonBytes;
  if (cap > kMaxTocJsonBytes) {
    return Status::Corrupt("TOC is " + std::to_string(uncompressed_length) +
                           " bytes uncompressed, more than the limit of " +
                           std::to_string(kMaxTocJsonBytes));
  }
  IMGFS_ASSIGN_OR_RETURN(std::string toc_json, DecompressToc(compressed, cap));
  if (uncompressed_length != 0 && toc_json.size() != uncompressed_length) {
    return Status::Corrupt("TOC decompresses to " + std::to_string(toc_json.size()) +
                           " bytes, its position says " + std::to_string(uncompressed_length));
  }
  return toc_json;
}

Result<LayerIndex> BuildZstdChunkedIndex(const LayerDescriptor& layer, BlobSource* source) {
  const std::string* checksum = FindAnnotation(layer, kZstdChunkedChecksumAnnotation,
                                               kZstdChunkedLegacyChecksumAnnotation);
  if (checksum == nullptr) {
    return Status::InvalidArgument("layer " + layer.digest + " has no " +
                                   std::string(kZstdChunkedChecksumAnnotation) +
                                   " annotation: its TOC cannot be trusted");
  }
  if (!ValidateDigest(*checksum).ok()) {
    return Status::Corrupt("zstd:chunked manifest checksum of layer " + layer.digest +
                           " is not a sha256 digest: \"" + *checksum + "\"");
  }
  if (source == nullptr) {
    return Status::Unavailable("the TOC of layer " + layer.digest +
                               " is not cached and no registry is reachable");
  }
  ZstdChunkedTocPosition pos;
  if (const std::string* position = FindAnnotation(layer, kZstdChunkedPositionAnnotation,
                                                   kZstdChunkedLegacyPositionAnnotation)) {
    auto parsed = ParseZstdChunkedPosition(*position);
    if (!parsed.ok()) return parsed.status().WithContext("layer " + layer.digest);
    pos = *parsed;
  } else {
    // The position is not covered by the checksum either way: a wrong one only makes the
    // digest check below fail.
    uint64_t tail_len = std::min<uint64_t>(layer.size, kSkippableHeaderSize + 64);
    std::string tail;
    Status s = source->ReadRange(layer.digest, layer.size - tail_len, tail_len, &tail);
    if (!s.ok()) return s.WithContext("reading the footer of layer " + layer.digest);
    if (tail.size() != tail_len) {
      return Status::Unavailable("short read of the footer of layer " + layer.digest);
    }
    auto parsed = ParseZstdChunkedFooter(tail);
    if (!parsed.ok()) return parsed.status().WithContext("layer " + layer.digest);
    pos = *parsed;
  }
  if (pos.offset < kSkippableHeaderSize || pos.offset > layer.size || pos.length == 0 ||
      pos.length > layer.size - pos.offset) {
    return Status::Corrupt("zstd:chunked TOC of layer " + layer.digest + " at " +
                           std::to_string(pos.offset) + "+" + std::to_string(pos.length) +
                           " is outside the " + std::to_string(layer.size) + "-byte blob");
  }
  if (pos.length > kMaxTocCompressedBytes || pos.uncompressed_length > kMaxTocJsonBytes) {
    return Status::Corrupt("zstd:chunked TOC of layer " + layer.digest +
                           " is larger than the limit (" + std::to_string(pos.length) +
                           " bytes compressed, " + std::to_string(pos.uncompressed_length) +
                           " uncompressed)");
  }
  std::string compressed;
  Status s = source->ReadRange(layer.digest, pos.offset, pos.length, &compressed);
  if (!s.ok()) return s.WithContext("reading the TOC of layer " + layer.digest);
  if (compressed.size() != pos.length) {
    return Status::Unavailable("short read of the TOC of layer " + layer.digest);
  }
  std::string got = Sha256Digest(compressed);
  if (got != *checksum) {
    return Status::DigestMismatch("TOC of layer " + layer.digest +
                                  " does not match its annotation (TOC hashes to " + got +
                                  ", annotation says " + *checksum + ")");
  }
  auto toc_json = DecompressZstdChunkedToc(compressed, pos.uncompressed_length);
  if (!toc_json.ok()) return toc_json.status().WithContext("TOC of layer " + layer.digest);
  compressed = std::string();
  return IndexFromTocJson(*toc_json, TocBlob{layer.digest, layer.size, UnitCodec::kZstdFrame,
                                             pos.offset - kSkippableHeaderSize, "zstd:chunked"});
}

}  // namespace imgfs::fs
