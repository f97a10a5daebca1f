#include "fs/layer/estargz.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "base/digest.h"
#include "base/log.h"
#include "fs/layer/toc.h"
#include "fs/layer/zlib_stream.h"

namespace imgfs::fs {
namespace {

constexpr uint64_t kFooterSize = 51;
constexpr uint64_t kLegacyFooterSize = 47;
// The first request takes this much of the blob's end: the footer, and with it the whole TOC
// of a small layer (a TOC entry compresses to ~50 bytes), saving a round trip. A larger TOC
// takes a second request for exactly the rest, so a mount never reads more than 16 KiB per
// layer beyond footer + TOC (the lazy-pull tests count this on the registry side).
constexpr uint64_t kTailFetchSize = (16u << 10) + kFooterSize;
// Extended headers that may come before stargz.index.json in the TOC's tar stream.
constexpr uint64_t kMaxTocTarHeaderBytes = 64u << 10;
constexpr uint64_t kMaxTocNumber = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

constexpr std::string_view kTocTarName = "stargz.index.json";

uint8_t Byte(std::string_view s, size_t i) { return static_cast<uint8_t>(s[i]); }

std::optional<uint64_t> ParseHex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return std::nullopt;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  if (v > kMaxTocNumber) return std::nullopt;
  return v;
}

bool IsGzipHeaderWithExtra(std::string_view p) {
  return p.size() >= 12 && Byte(p, 0) == 0x1f && Byte(p, 1) == 0x8b && Byte(p, 2) == 8 &&
         (Byte(p, 3) & 0x04) != 0;
}

uint16_t Le16(std::string_view p, size_t i) {
  return static_cast<uint16_t>(Byte(p, i) | (Byte(p, i + 1) << 8));
}

// Inflates the single gzip member at the start of `in`, refusing more than `max_out` bytes.
Result<std::string> InflateGzipMember(std::string_view in, uint64_t max_out) {
  InflateStream stream;
  IMGFS_RETURN_IF_ERROR(stream.Init(16 + MAX_WBITS));
  z_stream& zs = *stream.get();
  std::string out;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), std::numeric_limits<uInt>::max()));
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out.size() > max_out) {
      return Status::Corrupt("decompresses to more than " + std::to_string(max_out) + " bytes");
    }
    size_t old = out.size();
    out.resize(old + (256u << 10));
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + old);
    zs.avail_out = 256u << 10;
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(out.size() - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
      return Status::Corrupt("gzip stream is truncated");
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      std::string msg = zs.msg ? zs.msg : "inflate error " + std::to_string(rc);
      return Status::Corrupt("bad gzip data: " + msg);
    }
  }
  if (out.size() > max_out) {
    return Status::Corrupt("decompresses to more than " + std::to_string(max_out) + " bytes");
  }
  return out;
}

std::optional<uint64_t> ParseTarNumber(std::string_view field) {
  if (!field.empty() && (Byte(field, 0) & 0x80) != 0) {  // GNU base-256
    uint64_t v = Byte(field, 0) & 0x7f;
    for (size_t i = 1; i < field.size(); ++i) {
      if (v > (kMaxTocNumber >> 8)) return std::nullopt;
      v = (v << 8) | Byte(field, i);
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < field.size() && (field[i] == ' ' || field[i] == '\0')) ++i;
  bool any = false;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v > (kMaxTocNumber >> 3)) return std::nullopt;
    v = (v << 3) | static_cast<uint64_t>(field[i] - '0');
    any = true;
  }
  for (; i < field.size(); ++i) {
    if (field[i] != ' ' && field[i] != '\0') return std::nullopt;
  }
  if (!any) return std::nullopt;
  return v;
}

// The content of the stargz.index.json entry that opens the tar stream `tar`.

// Where the content of the stargz.index.json entry that opens the tar stream `tar` is.
Result<std::pair<size_t, size_t>> FindTocInTar(std::string_view tar) {
  size_t pos = 0;
  for (int headers = 0; headers < 8; ++headers) {
    if (tar.size() - pos < 512) return Status::Corrupt("TOC tar stream ends inside a header");
    std::string_view h = tar.substr(pos, 512);
    if (h.find_first_not_of('\0') == std::string_view::npos) {
      return Status::Corrupt("TOC tar stream has no stargz.index.json entry");
    }
    auto size = ParseTarNumber(h.substr(124, 12));
    if (!size) return Status::Corrupt("TOC tar header has a bad size field");
    char type = h[156];
    uint64_t padded = (*size + 511) / 512 * 512;
    if (*size > tar.size() - pos - 512) {
      return Status::Corrupt("TOC tar entry is larger than its stream");
    }
    if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
      pos += 512 + std::min<uint64_t>(padded, tar.size() - pos - 512);
      continue;
    }
    std::string_view name = h.substr(0, 100);
    name = name.substr(0, name.find('\0'));
    if (name != kTocTarName || (type != '0' && type != '\0')) {
      return Status::Corrupt("TOC tar stream starts with \"" + std::string(name) +
                             "\", not stargz.index.json");
    }
    return std::make_pair(pos + 512, static_cast<size_t>(*size));
  }
  return Status::Corrupt("TOC tar stream has too many extended headers");
}

}  // namespace

Result<uint64_t> ParseEstargzFooter(std::string_view tail, uint64_t* footer_size) {
  if (tail.size() >= kFooterSize) {
    std::string_view p = tail.substr(tail.size() - kFooterSize);
    if (IsGzipHeaderWithExtra(p) && Le16(p, 10) == 26 && p[12] == 'S' && p[13] == 'G' &&
        Le16(p, 14) == 22 && p.substr(32, 6) == "STARGZ") {
      if (auto off = ParseHex16(p.substr(16, 16))) {
        *footer_size = kFooterSize;
        return *off;
      }
    }
  }
  if (tail.size() >= kLegacyFooterSize) {
    std::string_view p = tail.substr(tail.size() - kLegacyFooterSize);
    if (IsGzipHeaderWithExtra(p) && Le16(p, 10) == 22 && p.substr(28, 6) == "STARGZ") {
      if (auto off = ParseHex16(p.substr(12, 16))) {
        *footer_size = kLegacyFooterSize;
        return *off;
      }
    }
  }
  return Status::Corrupt("no eStargz footer (51 or 47 bytes) at the end of the blob");
}

Result<std::string> ExtractEstargzTocJson(std::string_view toc_member) {
  IMGFS_ASSIGN_OR_RETURN(std::string tar,
                         InflateGzipMember(toc_member, kMaxTocJsonBytes + kMaxTocTarHeaderBytes));
  IMGFS_ASSIGN_OR_RETURN(auto where, FindTocInTar(tar));
  tar.resize(where.first + where.second);
  tar.erase(0, where.first);
  return tar;
}

Result<LayerIndex> BuildEstargzIndex(const LayerDescriptor& layer, BlobSource* source) {
  auto annotation = layer.annotations.find(std::string(kEstargzTocDigestAnnotation));
  if (annotation == layer.annotations.end()) {
    return Status::InvalidArgument("layer " + layer.digest + " has no " +
                                   std::string(kEstargzTocDigestAnnotation) +
                                   " annotation: its TOC cannot be trusted");
  }
  const std::string& want = annotation->second;
  if (!ValidateDigest(want).ok()) {
    return Status::Corrupt("annotation " + std::string(kEstargzTocDigestAnnotation) + " of layer " +
                           layer.digest + " is not a sha256 digest: \"" + want + "\"");
  }
  if (source == nullptr) {
    return Status::Unavailable("the TOC of layer " + layer.digest +
                               " is not cached and no registry is reachable");
  }
  if (layer.size < kLegacyFooterSize) {
    return Status::Corrupt("eStargz layer " + layer.digest + " is only " +
                           std::to_string(layer.size) + " bytes, smaller than its footer");
  }
  const uint64_t tail_len = std::min(layer.size, kTailFetchSize);
  const uint64_t tail_off = layer.size - tail_len;
  std::string tail;
  Status s = source->ReadRange(layer.digest, tail_off, tail_len, &tail);
  if (!s.ok()) return s.WithContext("reading the footer of layer " + layer.digest);
  if (tail.size() != tail_len) {
    return Status::Unavailable("short read of the footer of layer " + layer.digest);
  }
  uint64_t footer_size = 0;
  auto toc_off = ParseEstargzFooter(tail, &footer_size);
  if (!toc_off.ok()) return toc_off.status().WithContext("layer " + layer.digest);
  const uint64_t toc_end = layer.size - footer_size;
  if (*toc_off >= toc_end) {
    return Status::Corrupt("footer of layer " + layer.digest + " puts the TOC at offset " +
                           std::to_string(*toc_off) + ", outside the blob");
  }
  if (toc_end - *toc_off > kMaxTocCompressedBytes) {
    return Status::Corrupt("TOC of layer " + layer.digest + " is " +
                           std::to_string(toc_end - *toc_off) +
                           " bytes compressed, more than the limit");
  }
  std::string toc_gz;
  if (*toc_off >= tail_off) {
    toc_gz = tail.substr(*toc_off - tail_off, toc_end - *toc_off);
  } else {
    IMGFS_LOG(kDebug, "estargz: TOC of " << layer.digest << " starts " << (tail_off - *toc_off)
                                         << " bytes before the tail; fetching the rest");
    s = source->ReadRange(layer.digest, *toc_off, tail_off - *toc_off, &toc_gz);
    if (!s.ok()) return s.WithContext("reading the TOC of layer " + layer.digest);
    if (toc_gz.size() != tail_off - *toc_off) {
      return Status::Unavailable("short read of the TOC of layer " + layer.digest);
    }
    toc_gz.append(tail, 0, toc_end - tail_off);
  }
  tail = std::string();

  auto toc_json = ExtractEstargzTocJson(toc_gz);
  if (!toc_json.ok()) return toc_json.status().WithContext("TOC of layer " + layer.digest);
  toc_gz = std::string();
  std::string got = Sha256Digest(*toc_json);
  if (got != want) {
    return Status::DigestMismatch("TOC of layer " + layer.digest +
                                  " does not match its annotation (TOC hashes to " + got +
                                  ", annotation says " + want + ")");
  }
  return IndexFromTocJson(
      *toc_json, TocBlob{layer.digest, layer.size, UnitCodec::kGzipMember, *toc_off, "estargz"});
}

}  // namespace imgfs::fs
