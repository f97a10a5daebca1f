#include "fs/layer/estargz.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/base64.h"
#include "base/digest.h"
#include "base/log.h"
#include "fs/layer/zlib_stream.h"
#include "fs/layer/zstd_chunked.h"

namespace imgfs::fs {
namespace {

using nlohmann::json;

constexpr uint64_t kFooterSize = 51;
constexpr uint64_t kLegacyFooterSize = 47;
// The first request takes this much of the blob's end: the footer, and with it the whole TOC
// of a small layer (a TOC entry compresses to ~50 bytes), saving a round trip. A larger TOC
// takes a second request for exactly the rest, so a mount never reads more than 16 KiB per
// layer beyond footer + TOC (the lazy-pull tests count this on the registry side).
constexpr uint64_t kTailFetchSize = (16u << 10) + kFooterSize;
// Bounds on what outside numbers may make us allocate. A TOC of a layer with a million files
// is ~300 MiB of JSON at most; anything larger is not a layer we can serve anyway.
constexpr uint64_t kMaxTocCompressed = 128ull << 20;
constexpr uint64_t kMaxTocJson = 384ull << 20;
constexpr size_t kMaxTocEntries = 4u << 20;
// A unit is decoded whole into memory on a read; a chunk larger than this (legacy stargz
// without chunking and a huge file) is refused rather than allocated.
constexpr uint64_t kMaxUnitDecoded = 512ull << 20;
constexpr uint64_t kMaxTocNumber = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

constexpr std::string_view kTocTarName = "stargz.index.json";
constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

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
Result<std::string_view> FindTocInTar(std::string_view tar) {
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
    return tar.substr(pos + 512, *size);
  }
  return Status::Corrupt("TOC tar stream has too many extended headers");
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Reads a non-negative JSON integer field; absent or null is 0.
Result<uint64_t> GetNumber(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return uint64_t{0};
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > kMaxTocNumber) return Status::Corrupt(std::string("\"") + key + "\" is too large");
    return v;
  }
  if (it->is_number_integer()) {
    int64_t v = it->get<int64_t>();
    if (v < 0) return Status::Corrupt(std::string("\"") + key + "\" is negative");
    return static_cast<uint64_t>(v);
  }
  return Status::Corrupt(std::string("\"") + key + "\" is not an integer");
}

Result<std::string> GetString(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::string();
  if (!it->is_string()) return Status::Corrupt(std::string("\"") + key + "\" is not a string");
  return it->get<std::string>();
}

Result<uint32_t> GetUint32(const json& obj, const char* key) {
  IMGFS_ASSIGN_OR_RETURN(uint64_t v, GetNumber(obj, key));
  if (v > std::numeric_limits<uint32_t>::max()) {
    return Status::Corrupt(std::string("\"") + key + "\" is out of range");
  }
  return static_cast<uint32_t>(v);
}

// The LayerIndex schema may carry the TOC's digests itself (Chunk::sha256, the digest of the
// chunk's decoded bytes; LayerIndex::prefetch_end). Filled in when the fields exist, so the
// index stored in the cache keeps what the reader needs to verify TOC-described units.
template <typename C>
void SetChunkDigest(C* chunk, const std::string& digest) {
  if constexpr (requires { chunk->sha256 = digest; }) chunk->sha256 = digest;
}
template <typename L>
void SetPrefetchEnd(L* index, uint64_t end) {
  if constexpr (requires { index->prefetch_end = end; }) index->prefetch_end = end;
}
template <typename C>
constexpr bool ChunkHasDigest() {
  return requires(C c) { c.sha256 = std::string(); };
}

// UnitChecksFromIndex, on entries whose chunk type is a template parameter so that the
// Chunk::sha256 accesses are only compiled when the field exists.
template <typename E>
Result<std::vector<std::vector<ChunkCheck>>> UnitChecksFrom(const std::vector<E>& entries,
                                                            const std::vector<Unit>& units) {
  using C = typename decltype(E::chunks)::value_type;
  if constexpr (!ChunkHasDigest<C>()) {
    return Status::Unsupported("this build's LayerIndex keeps no chunk digests");
  } else {
    std::vector<std::vector<ChunkCheck>> checks(units.size());
    for (const E& e : entries) {
      for (const C& c : e.chunks) {
        if (c.unit == C::kZeroUnit || c.sha256.empty()) continue;
        if (c.unit >= checks.size()) return Status::Corrupt("chunk points at a missing unit");
        checks[c.unit].push_back({c.unit_offset, c.length, c.sha256});
      }
    }
    for (size_t u = 0; u < checks.size(); ++u) {
      std::sort(checks[u].begin(), checks[u].end(), [](const ChunkCheck& a, const ChunkCheck& b) {
        return a.unit_offset < b.unit_offset;
      });
      if (units[u].sha256.empty() && checks[u].empty()) {
        return Status::Corrupt("unit at offset " + std::to_string(units[u].coff) +
                               " has neither a digest nor chunk digests");
      }
    }
    return checks;
  }
}

// A content chunk as the TOC describes it, before units are assigned.
struct RawChunk {
  size_t entry = 0;  // index into the output entries
  size_t chunk = 0;  // index into that entry's chunks
  uint64_t offset = 0;
  uint64_t inner_offset = 0;
  bool zeros = false;
  std::string digest;
};

class TocConverter {
 public:
  TocConverter(const LayerDescriptor& layer, UnitCodec codec, uint64_t data_end)
      : layer_(layer), codec_(codec), data_end_(data_end) {}

  Result<TocLayerIndex> Convert(const json& doc, std::string format) {
    if (!doc.is_object()) return Status::Corrupt("the TOC is not a JSON object");
    auto version = doc.find("version");
    if (version != doc.end() && !(version->is_number_integer() && version->get<int64_t>() == 1)) {
      return Status::Unsupported("TOC version " + version->dump() + " is not supported (only 1)");
    }
    auto entries = doc.find("entries");
    if (entries == doc.end() || !entries->is_array()) {
      return Status::Corrupt("the TOC has no \"entries\" list");
    }
    if (entries->size() > kMaxTocEntries) {
      return Status::Corrupt("the TOC lists " + std::to_string(entries->size()) +
                             " entries, more than the limit of " +
                             std::to_string(kMaxTocEntries));
    }
    out_.index.blob_digest = layer_.digest;
    out_.index.format = std::move(format);
    out_.index.blob_size = layer_.size;
    out_.index.entries.reserve(entries->size());
    size_t i = 0;
    for (const json& je : *entries) {
      Status s = AddEntry(je);
      if (!s.ok()) return s.WithContext("TOC entry " + std::to_string(i) + Describe(je));
      ++i;
    }
    IMGFS_RETURN_IF_ERROR(FinishFile());
    IMGFS_RETURN_IF_ERROR(AssignUnits());
    SetPrefetchEnd(&out_.index, out_.prefetch_end);
    return std::move(out_);
  }

 private:
  static std::string Describe(const json& je) {
    if (je.is_object()) {
      auto it = je.find("name");
      if (it != je.end() && it->is_string()) return " (" + it->get<std::string>() + ")";
    }
    return "";
  }

  Status AddEntry(const json& je) {
    if (!je.is_object()) return Status::Corrupt("not a JSON object");
    IMGFS_ASSIGN_OR_RETURN(std::string type, GetString(je, "type"));
    IMGFS_ASSIGN_OR_RETURN(uint64_t offset, GetNumber(je, "offset"));
    IMGFS_ASSIGN_OR_RETURN(uint64_t end_offset, GetNumber(je, "endOffset"));
    // Every recorded offset is the start of a compressed member/frame: it bounds the unit
    // before it, even when the entry itself gives no unit (landmarks, zero chunks).
    if (offset != 0) boundaries_.push_back(offset);
    if (end_offset != 0) boundaries_.push_back(end_offset);

    if (type == "chunk") {
      if (!current_file_) return Status::Corrupt("a \"chunk\" entry follows no regular file");
      return AddChunk(je, offset, /*first=*/false);
    }
    IMGFS_RETURN_IF_ERROR(FinishFile());

    IMGFS_ASSIGN_OR_RETURN(std::string name, GetString(je, "name"));
    IMGFS_ASSIGN_OR_RETURN(std::string path, CleanPath(name));
    if (path == kPrefetchLandmark) {
      out_.prefetch_end = offset;
      return Status::Ok();
    }
    if (path == kNoPrefetchLandmark) {
      out_.prefetch_end = 0;
      return Status::Ok();
    }

    Entry e;
    e.path = std::move(path);
    if (type == "reg") e.type = EntryType::kRegular;
    else if (type == "dir") e.type = EntryType::kDirectory;
    else if (type == "symlink") e.type = EntryType::kSymlink;
    else if (type == "hardlink") e.type = EntryType::kHardlink;
    else if (type == "char") e.type = EntryType::kCharDevice;
    else if (type == "block") e.type = EntryType::kBlockDevice;
    else if (type == "fifo") e.type = EntryType::kFifo;
    else return Status::Corrupt("unknown entry type \"" + type + "\"");

    IMGFS_ASSIGN_OR_RETURN(uint64_t mode, GetNumber(je, "mode"));
    e.mode = static_cast<uint32_t>(mode & 07777);  // tar mode; type bits, if any, dropped
    IMGFS_ASSIGN_OR_RETURN(e.uid, GetUint32(je, "uid"));
    IMGFS_ASSIGN_OR_RETURN(e.gid, GetUint32(je, "gid"));
    IMGFS_ASSIGN_OR_RETURN(std::string modtime, GetString(je, "modtime"));
    if (!modtime.empty()) {
      auto t = ParseRfc3339(modtime);
      if (!t.ok()) return t.status();
      e.mtime_sec = t->first;
      e.mtime_nsec = t->second;
    }
    IMGFS_ASSIGN_OR_RETURN(std::string link, GetString(je, "linkName"));
    if (e.type == EntryType::kSymlink) {
      if (link.empty()) return Status::Corrupt("symlink without a target");
      e.link_target = std::move(link);
    } else if (e.type == EntryType::kHardlink) {
      auto target = CleanPath(link);
      if (!target.ok() || target->empty()) {
        return Status::Corrupt("hard link to \"" + link + "\" is not a valid path");
      }
      e.link_target = std::move(target).value();
    }
    if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
      IMGFS_ASSIGN_OR_RETURN(e.dev_major, GetUint32(je, "devMajor"));
      IMGFS_ASSIGN_OR_RETURN(e.dev_minor, GetUint32(je, "devMinor"));
    }
    auto xattrs = je.find("xattrs");
    if (xattrs != je.end() && !xattrs->is_null()) {
      if (!xattrs->is_object()) return Status::Corrupt("\"xattrs\" is not an object");
      for (auto it = xattrs->begin(); it != xattrs->end(); ++it) {
        if (!it.value().is_string()) return Status::Corrupt("xattr value is not a string");
        auto value = DecodeBase64(it.value().get_ref<const std::string&>());
        if (!value || it.key().empty()) {
          return Status::Corrupt("xattr \"" + it.key() + "\" is not base64");
        }
        // Empty values are dropped, as the tar reader drops them (see tar.cc): one image, one
        // tree, whatever the layer format.
        if (!value->empty()) e.xattrs.emplace_back(it.key(), std::move(*value));
      }
    }
    ApplyWhiteoutName(&e);

    out_.index.entries.push_back(std::move(e));
    if (type == "reg") {
      Entry& f = out_.index.entries.back();
      IMGFS_ASSIGN_OR_RETURN(f.size, GetNumber(je, "size"));
      IMGFS_ASSIGN_OR_RETURN(file_digest_, GetString(je, "digest"));
      current_file_ = out_.index.entries.size() - 1;
      covered_ = 0;
      first_raw_chunk_ = raw_chunks_.size();
      if (f.size > 0) return AddChunk(je, offset, /*first=*/true);
    }
    return Status::Ok();
  }

  Status AddChunk(const json& je, uint64_t offset, bool first) {
    Entry& f = out_.index.entries[*current_file_];
    IMGFS_ASSIGN_OR_RETURN(uint64_t chunk_offset, GetNumber(je, "chunkOffset"));
    IMGFS_ASSIGN_OR_RETURN(uint64_t chunk_size, GetNumber(je, "chunkSize"));
    IMGFS_ASSIGN_OR_RETURN(uint64_t inner, GetNumber(je, "innerOffset"));
    IMGFS_ASSIGN_OR_RETURN(std::string chunk_type, GetString(je, "chunkType"));
    IMGFS_ASSIGN_OR_RETURN(std::string digest, GetString(je, "chunkDigest"));
    if (first && chunk_offset != 0) return Status::Corrupt("first chunk does not start at 0");
    if (chunk_offset != covered_) {
      return Status::Corrupt("chunk at file offset " + std::to_string(chunk_offset) +
                             " does not follow the previous one (ends at " +
                             std::to_string(covered_) + ")");
    }
    if (chunk_offset >= f.size) {
      return Status::Corrupt("chunk at file offset " + std::to_string(chunk_offset) +
                             " is past the end of the " + std::to_string(f.size) +
                             "-byte file");
    }
    uint64_t length = chunk_size != 0 ? chunk_size : f.size - chunk_offset;
    if (length > f.size - chunk_offset) {
      return Status::Corrupt("chunk of " + std::to_string(length) + " bytes at file offset " +
                             std::to_string(chunk_offset) + " runs past the end of the file");
    }
    bool zeros = false;
    if (chunk_type == "zeros") {
      zeros = true;
    } else if (!chunk_type.empty()) {
      return Status::Unsupported("chunk type \"" + chunk_type + "\" is not supported");
    }
    if (!zeros) {
      if (offset >= data_end_) {
        return Status::Corrupt("chunk offset " + std::to_string(offset) +
                               " is not before the TOC at " + std::to_string(data_end_));
      }
      if (!digest.empty() && !ValidateDigest(digest).ok()) {
        return Status::Corrupt("chunk digest \"" + digest + "\" is not a sha256 digest");
      }
    }
    Chunk c;
    c.file_offset = chunk_offset;
    c.length = length;
    f.chunks.push_back(c);
    RawChunk raw;
    raw.entry = *current_file_;
    raw.chunk = f.chunks.size() - 1;
    raw.offset = offset;
    raw.inner_offset = inner;
    raw.zeros = zeros;
    raw.digest = std::move(digest);
    raw_chunks_.push_back(std::move(raw));
    covered_ += length;
    return Status::Ok();
  }

  // Ends the regular file being described, if any: its chunks must cover it, and every data
  // chunk must have a digest (a single-chunk file may be verified by the file's digest).
  Status FinishFile() {
    if (!current_file_) return Status::Ok();
    const Entry& f = out_.index.entries[*current_file_];
    if (covered_ != f.size) {
      return Status::Corrupt("chunks of \"" + f.path + "\" cover " + std::to_string(covered_) +
                             " of its " + std::to_string(f.size) + " bytes");
    }
    size_t n = raw_chunks_.size() - first_raw_chunk_;
    for (size_t i = first_raw_chunk_; i < raw_chunks_.size(); ++i) {
      RawChunk& raw = raw_chunks_[i];
      if (raw.zeros || !raw.digest.empty()) continue;
      if (n == 1 && !file_digest_.empty()) {
        if (!ValidateDigest(file_digest_).ok()) {
          return Status::Corrupt("digest \"" + file_digest_ + "\" of \"" + f.path +
                                 "\" is not a sha256 digest");
        }
        raw.digest = file_digest_;
        continue;
      }
      return Status::Corrupt("the TOC gives no digest for the chunk of \"" + f.path +
                             "\" at file offset " +
                             std::to_string(f.chunks[raw.chunk].file_offset) +
                             ": its content cannot be verified");
    }
    current_file_.reset();
    return Status::Ok();
  }

  Status AssignUnits() {
    std::sort(boundaries_.begin(), boundaries_.end());
    boundaries_.erase(std::unique(boundaries_.begin(), boundaries_.end()), boundaries_.end());
    std::map<uint64_t, uint32_t> unit_of_offset;
    std::vector<Unit>& units = out_.index.units;
    for (const RawChunk& raw : raw_chunks_) {
      Chunk& c = out_.index.entries[raw.entry].chunks[raw.chunk];
      if (raw.zeros) {
        c.unit = Chunk::kZeroUnit;
        c.unit_offset = 0;
        continue;
      }
      auto [it, inserted] = unit_of_offset.emplace(raw.offset, static_cast<uint32_t>(units.size()));
      if (inserted) {
        auto next = std::upper_bound(boundaries_.begin(), boundaries_.end(), raw.offset);
        uint64_t end = (next == boundaries_.end() || *next > data_end_) ? data_end_ : *next;
        Unit u;
        u.codec = codec_;
        u.coff = raw.offset;
        u.clen = end - raw.offset;
        units.push_back(std::move(u));
        out_.unit_checks.emplace_back();
      }
      Unit& u = units[it->second];
      // Both terms are bounded by kMaxTocNumber (2^63 - 1): the sum cannot wrap.
      uint64_t end = raw.inner_offset + c.length;
      if (end > kMaxUnitDecoded) {
        return Status::Unsupported("a chunk of \"" + out_.index.entries[raw.entry].path +
                                   "\" decodes to " + std::to_string(end) +
                                   " bytes, more than the limit of " +
                                   std::to_string(kMaxUnitDecoded));
      }
      u.ulen = std::max(u.ulen, end);
      c.unit = it->second;
      c.unit_offset = raw.inner_offset;
      SetChunkDigest(&c, raw.digest);
      out_.unit_checks[it->second].push_back({raw.inner_offset, c.length, raw.digest});
    }
    for (size_t u = 0; u < units.size(); ++u) {
      auto& checks = out_.unit_checks[u];
      std::sort(checks.begin(), checks.end(),
                [](const ChunkCheck& a, const ChunkCheck& b) { return a.unit_offset < b.unit_offset; });
      for (size_t k = 1; k < checks.size(); ++k) {
        if (checks[k].unit_offset < checks[k - 1].unit_offset + checks[k - 1].length) {
          return Status::Corrupt("chunks overlap in the member at offset " +
                                 std::to_string(units[u].coff));
        }
      }
    }
    return Status::Ok();
  }

  const LayerDescriptor& layer_;
  UnitCodec codec_;
  uint64_t data_end_;
  TocLayerIndex out_;
  std::vector<uint64_t> boundaries_;
  std::vector<RawChunk> raw_chunks_;
  std::optional<size_t> current_file_;  // regular file that "chunk" entries extend
  uint64_t covered_ = 0;
  size_t first_raw_chunk_ = 0;
  std::string file_digest_;
};

}  // namespace

Result<std::pair<int64_t, uint32_t>> ParseRfc3339(std::string_view s) {
  auto bad = [&] { return Status::Corrupt("\"" + std::string(s) + "\" is not an RFC 3339 time"); };
  auto digits = [&](size_t pos, size_t n, int64_t* v) {
    if (pos + n > s.size()) return false;
    *v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      *v = *v * 10 + (s[i] - '0');
    }
    return true;
  };
  int64_t year, month, day, hour, minute, second;
  if (!digits(0, 4, &year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, &month) ||
      s[7] != '-' || !digits(8, 2, &day) || (s[10] != 'T' && s[10] != 't') ||
      !digits(11, 2, &hour) || s[13] != ':' || !digits(14, 2, &minute) || s[16] != ':' ||
      !digits(17, 2, &second)) {
    return bad();
  }
  static constexpr int kDaysInMonth[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > kDaysInMonth[month - 1] || hour > 23 ||
      minute > 59 || second > 59) {
    return bad();
  }
  size_t pos = 19;
  uint32_t nsec = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 9) nsec = nsec * 10 + static_cast<uint32_t>(s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0) return bad();
    for (size_t k = n; k < 9; ++k) nsec *= 10;
  }
  int64_t zone = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int64_t zh, zm;
    if (!digits(pos + 1, 2, &zh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(pos + 4, 2, &zm) || zh > 23 || zm > 59) {
      return bad();
    }
    zone = (zh * 3600 + zm * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != s.size()) return bad();
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - zone;
  return std::make_pair(secs, nsec);
}

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

Result<TocLayerIndex> IndexFromTocJson(std::string_view toc_json, const LayerDescriptor& layer,
                                       UnitCodec codec, uint64_t data_end, std::string format) {
  json doc = json::parse(toc_json.begin(), toc_json.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return Status::Corrupt("TOC of layer " + layer.digest + " is not valid JSON");
  }
  try {
    TocConverter converter(layer, codec, data_end);
    auto result = converter.Convert(doc, std::move(format));
    if (!result.ok()) return result.status().WithContext("TOC of layer " + layer.digest);
    return result;
  } catch (const json::exception& e) {
    return Status::Corrupt("TOC of layer " + layer.digest + " is malformed: " + e.what());
  } catch (const std::bad_alloc&) {
    return Status::Corrupt("TOC of layer " + layer.digest + " is too large to index");
  }
}

Result<std::vector<std::vector<ChunkCheck>>> UnitChecksFromIndex(const LayerIndex& index) {
  return UnitChecksFrom(index.entries, index.units);
}

Status VerifyDecodedUnit(const std::vector<ChunkCheck>& checks, std::string_view decoded) {
  for (const ChunkCheck& c : checks) {
    if (c.unit_offset > decoded.size() || c.length > decoded.size() - c.unit_offset) {
      return Status::Corrupt("decoded unit has " + std::to_string(decoded.size()) +
                             " bytes; a chunk needs bytes up to " +
                             std::to_string(c.unit_offset + c.length));
    }
    std::string got = Sha256Digest(decoded.substr(c.unit_offset, c.length));
    if (got != c.sha256) {
      return Status::DigestMismatch("chunk at decoded offset " + std::to_string(c.unit_offset) +
                                    " hashes to " + got + ", its TOC digest is " + c.sha256);
    }
  }
  return Status::Ok();
}

Result<TocLayerIndex> ReadEstargzIndex(const LayerDescriptor& layer, cache::BlobSource* source) {
  // stargz-snapshotter's zstd:chunked layers carry the eStargz TOC annotation too, but their
  // TOC sits in a zstd skippable frame, not behind a gzip footer.
  if (IsZstdChunkedLayer(layer)) return ReadZstdChunkedIndex(layer, source);
  auto annotation = layer.annotations.find(std::string(kEstargzTocDigestAnnotation));
  if (annotation == layer.annotations.end()) {
    return Status::InvalidArgument("layer " + layer.digest + " has no " +
                                   std::string(kEstargzTocDigestAnnotation) +
                                   " annotation: its TOC cannot be trusted");
  }
  const std::string& want = annotation->second;
  if (!ValidateDigest(want).ok()) {
    return Status::Corrupt("annotation " + std::string(kEstargzTocDigestAnnotation) +
                           " of layer " + layer.digest + " is not a sha256 digest: \"" + want +
                           "\"");
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
  if (toc_end - *toc_off > kMaxTocCompressed) {
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

  auto tar = InflateGzipMember(toc_gz, kMaxTocJson + (64u << 10));
  if (!tar.ok()) return tar.status().WithContext("TOC of layer " + layer.digest);
  toc_gz = std::string();
  auto toc_json = FindTocInTar(*tar);
  if (!toc_json.ok()) return toc_json.status().WithContext("layer " + layer.digest);
  std::string got = Sha256Digest(*toc_json);
  if (got != want) {
    return Status::DigestMismatch("TOC of layer " + layer.digest +
                                  " does not match its annotation (TOC hashes to " + got +
                                  ", annotation says " + want + ")");
  }
  return IndexFromTocJson(*toc_json, layer, UnitCodec::kGzipMember, *toc_off, "estargz");
}

Result<LayerIndex> BuildEstargzIndex(const LayerDescriptor& layer, cache::BlobSource* source) {
  IMGFS_ASSIGN_OR_RETURN(TocLayerIndex toc, ReadEstargzIndex(layer, source));
  return std::move(toc.index);
}

}  // namespace imgfs::fs
