#include "fs/layer/toc.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <tuple>

#include "base/base64.h"
#include "base/blob_source.h"
#include "base/digest.h"
#include "fs/layer/decode.h"
#include "fs/layer/toc_sax.h"

namespace imgfs::fs {
namespace {

constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

// A content chunk as the TOC describes it, before units are assigned.
struct RawChunk {
  uint32_t entry = 0;  // index into the output entries
  uint32_t chunk = 0;  // index into that entry's chunks
  uint64_t offset = 0;
  uint64_t inner_offset = 0;
};

// TOC entries -> LayerIndex, one entry at a time.
class TocConverter {
 public:
  explicit TocConverter(const TocBlob& blob) : blob_(blob) {
    out_.blob_digest = blob.digest;
    out_.format = blob.format;
    out_.blob_size = blob.size;
  }

  Status AddEntry(TocEntryFields& je) {
    const std::string& type = je.string(TocEntryFields::kType);
    const uint64_t offset = je.number(TocEntryFields::kOffset);
    // Every recorded offset is the start of a compressed member/frame: it bounds the unit
    // before it, even when the entry itself gives no unit (landmarks, zero chunks).
    if (offset != 0) boundaries_.push_back(offset);
    if (je.number(TocEntryFields::kEndOffset) != 0)
      boundaries_.push_back(je.number(TocEntryFields::kEndOffset));

    if (type == "chunk") {
      if (!current_file_ && dropped_file_) return Status::Ok();
      if (!current_file_) return Status::Corrupt("a \"chunk\" entry follows no regular file");
      return AddChunk(je, /*first=*/false);
    }
    IMGFS_RETURN_IF_ERROR(FinishFile());
    dropped_file_ = false;

    IMGFS_ASSIGN_OR_RETURN(std::string path, CleanPath(je.string(TocEntryFields::kName)));
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

    e.mode = static_cast<uint32_t>(je.number(TocEntryFields::kMode) & 07777);  // type bits dropped
    IMGFS_ASSIGN_OR_RETURN(e.uid, Uint32(je, TocEntryFields::kUid));
    IMGFS_ASSIGN_OR_RETURN(e.gid, Uint32(je, TocEntryFields::kGid));
    const std::string& modtime = je.string(TocEntryFields::kModtime);
    if (!modtime.empty()) {
      IMGFS_ASSIGN_OR_RETURN(auto t, ParseRfc3339(modtime));
      e.mtime_sec = t.first;
      e.mtime_nsec = t.second;
    }
    std::string& link = je.string(TocEntryFields::kLinkName);
    if (e.type == EntryType::kSymlink) {
      if (link.empty()) return Status::Corrupt("symlink without a target");
      if (link.size() > kMaxPathLength) return TooLong("symlink target", link, kMaxPathLength);
      e.link_target = std::move(link);
    } else if (e.type == EntryType::kHardlink) {
      auto target = CleanPath(link);
      if (!target.ok() || target->empty()) {
        return Status::Corrupt("hard link to \"" + link + "\" is not a valid path");
      }
      e.link_target = std::move(target).value();
    }
    if (e.type == EntryType::kCharDevice || e.type == EntryType::kBlockDevice) {
      IMGFS_ASSIGN_OR_RETURN(e.dev_major, Uint32(je, TocEntryFields::kDevMajor));
      IMGFS_ASSIGN_OR_RETURN(e.dev_minor, Uint32(je, TocEntryFields::kDevMinor));
    }
    if (!je.xattrs.empty()) {
      IMGFS_RETURN_IF_ERROR(DecodeXattrs(je.xattrs, &e.xattrs));
      IMGFS_RETURN_IF_ERROR(ValidateXattrs(e));
    }
    // Names docker never extracts (degenerate whiteouts, AUFS metadata) are left out, as the tar
    // reader leaves them out: one image, one tree, whatever the layer format. The chunks of a
    // file left out are read past.
    if (IsDroppedName(e.path)) {
      dropped_file_ = type == "reg";
      return Status::Ok();
    }
    ApplyWhiteoutName(&e);

    if (out_.entries.size() >= std::numeric_limits<uint32_t>::max()) {
      return Status::Corrupt("too many entries");
    }
    out_.entries.push_back(std::move(e));
    if (type == "reg") {
      Entry& f = out_.entries.back();
      f.size = je.number(TocEntryFields::kSize);
      file_digest_ = std::move(je.string(TocEntryFields::kDigest));
      current_file_ = static_cast<uint32_t>(out_.entries.size() - 1);
      covered_ = 0;
      first_raw_chunk_ = raw_chunks_.size();
      if (f.size > 0) return AddChunk(je, /*first=*/true);
    }
    return Status::Ok();
  }

  Result<LayerIndex> Finish() {
    IMGFS_RETURN_IF_ERROR(FinishFile());
    dropped_file_ = false;
    IMGFS_RETURN_IF_ERROR(AssignUnits());
    return std::move(out_);
  }

 private:
  static Result<uint32_t> Uint32(const TocEntryFields& je, TocEntryFields::Field f) {
    uint64_t v = je.number(f);
    if (v > std::numeric_limits<uint32_t>::max()) {
      return Status::Corrupt(std::string("\"") + TocEntryFields::kNames[f] + "\" is out of range");
    }
    return static_cast<uint32_t>(v);
  }

  // Base64 values -> raw ones, sorted by name; empty values are dropped, as the tar reader drops
  // them (see tar.cc): one image, one tree, whatever the layer format.
  static Status DecodeXattrs(std::vector<std::pair<std::string, std::string>>& in,
                             std::vector<std::pair<std::string, std::string>>* out) {
    // A name given twice keeps its last value, as a JSON object does.
    std::stable_sort(in.begin(), in.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < in.size(); ++i) {
      if (i + 1 < in.size() && in[i + 1].first == in[i].first) continue;
      auto value = DecodeBase64(in[i].second);
      if (!value || in[i].first.empty()) {
        return Status::Corrupt("xattr \"" + in[i].first + "\" is not base64");
      }
      if (!value->empty()) out->emplace_back(std::move(in[i].first), std::move(*value));
    }
    return Status::Ok();
  }

  Status AddChunk(TocEntryFields& je, bool first) {
    Entry& f = out_.entries[*current_file_];
    const uint64_t offset = je.number(TocEntryFields::kOffset);
    const uint64_t chunk_offset = je.number(TocEntryFields::kChunkOffset);
    const uint64_t chunk_size = je.number(TocEntryFields::kChunkSize);
    const std::string& chunk_type = je.string(TocEntryFields::kChunkType);
    std::string& digest = je.string(TocEntryFields::kChunkDigest);
    if (first && chunk_offset != 0) return Status::Corrupt("first chunk does not start at 0");
    if (chunk_offset != covered_) {
      return Status::Corrupt("chunk at file offset " + std::to_string(chunk_offset) +
                             " does not follow the previous one (ends at " +
                             std::to_string(covered_) + ")");
    }
    if (chunk_offset >= f.size) {
      return Status::Corrupt("chunk at file offset " + std::to_string(chunk_offset) +
                             " is past the end of the " + std::to_string(f.size) + "-byte file");
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
    Chunk c;
    c.file_offset = chunk_offset;
    c.length = length;
    if (zeros) {
      c.unit = Chunk::kZeroUnit;
    } else {
      if (offset >= blob_.data_end) {
        return Status::Corrupt("chunk offset " + std::to_string(offset) +
                               " is not before the TOC at " + std::to_string(blob_.data_end));
      }
      if (!digest.empty() && !ValidateDigest(digest).ok()) {
        return Status::Corrupt("chunk digest \"" + digest + "\" is not a sha256 digest");
      }
      // Both terms are bounded by kMaxTocNumber (2^63 - 1): the sum cannot wrap.
      const uint64_t inner = je.number(TocEntryFields::kInnerOffset);
      if (inner + length > kMaxUnitBytes) {
        return Status::Unsupported(
            "a chunk of \"" + f.path + "\" decodes to " + std::to_string(inner + length) +
            " bytes, more than the limit of " + std::to_string(kMaxUnitBytes));
      }
      c.sha256 = std::move(digest);
      raw_chunks_.push_back(
          {*current_file_, static_cast<uint32_t>(f.chunks.size()), offset, inner});
    }
    f.chunks.push_back(std::move(c));
    covered_ += length;
    return Status::Ok();
  }

  // Ends the regular file being described, if any: its chunks must cover it, and every data
  // chunk must have a digest (a single-chunk file may be verified by the file's digest).
  Status FinishFile() {
    if (!current_file_) return Status::Ok();
    Entry& f = out_.entries[*current_file_];
    if (covered_ != f.size) {
      return Status::Corrupt("chunks of \"" + f.path + "\" cover " + std::to_string(covered_) +
                             " of its " + std::to_string(f.size) + " bytes");
    }
    for (size_t i = first_raw_chunk_; i < raw_chunks_.size(); ++i) {
      Chunk& c = f.chunks[raw_chunks_[i].chunk];
      if (!c.sha256.empty()) continue;
      if (f.chunks.size() == 1 && !file_digest_.empty()) {
        if (!ValidateDigest(file_digest_).ok()) {
          return Status::Corrupt("digest \"" + file_digest_ + "\" of \"" + f.path +
                                 "\" is not a sha256 digest");
        }
        c.sha256 = file_digest_;
        continue;
      }
      return Status::Corrupt("the TOC gives no digest for the chunk of \"" + f.path +
                             "\" at file offset " + std::to_string(c.file_offset) +
                             ": its content cannot be verified");
    }
    current_file_.reset();
    return Status::Ok();
  }

  // One unit per distinct data chunk offset, in blob order.
  Status AssignUnits() {
    std::sort(boundaries_.begin(), boundaries_.end());
    boundaries_.erase(std::unique(boundaries_.begin(), boundaries_.end()), boundaries_.end());
    std::vector<uint64_t> starts;
    starts.reserve(raw_chunks_.size());
    for (const RawChunk& raw : raw_chunks_) starts.push_back(raw.offset);
    std::sort(starts.begin(), starts.end());
    starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
    std::vector<Unit>& units = out_.units;
    units.reserve(starts.size());
    for (uint64_t start : starts) {
      auto next = std::upper_bound(boundaries_.begin(), boundaries_.end(), start);
      uint64_t end = (next == boundaries_.end() || *next > blob_.data_end) ? blob_.data_end : *next;
      Unit u;
      u.codec = blob_.codec;
      u.coff = start;
      u.clen = end - start;
      units.push_back(std::move(u));
    }
    boundaries_ = std::vector<uint64_t>();
    // (unit, unit_offset, length) of every data chunk, to find overlaps.
    std::vector<std::tuple<uint32_t, uint64_t, uint64_t>> spans;
    spans.reserve(raw_chunks_.size());
    for (const RawChunk& raw : raw_chunks_) {
      Chunk& c = out_.entries[raw.entry].chunks[raw.chunk];
      auto unit = static_cast<uint32_t>(std::lower_bound(starts.begin(), starts.end(), raw.offset) -
                                        starts.begin());
      c.unit = unit;
      c.unit_offset = raw.inner_offset;
      units[unit].ulen = std::max(units[unit].ulen, raw.inner_offset + c.length);
      spans.emplace_back(unit, raw.inner_offset, c.length);
    }
    std::sort(spans.begin(), spans.end());
    for (size_t k = 1; k < spans.size(); ++k) {
      const auto& [unit, off, len] = spans[k];
      const auto& [prev_unit, prev_off, prev_len] = spans[k - 1];
      if (unit == prev_unit && off < prev_off + prev_len) {
        return Status::Corrupt("chunks overlap in the member at offset " +
                               std::to_string(units[unit].coff));
      }
    }
    return Status::Ok();
  }

  const TocBlob& blob_;
  LayerIndex out_;
  std::vector<uint64_t> boundaries_;
  std::vector<RawChunk> raw_chunks_;
  std::optional<uint32_t> current_file_;  // regular file that "chunk" entries extend
  bool dropped_file_ = false;             // the last file was left out: skip its chunks
  uint64_t covered_ = 0;
  size_t first_raw_chunk_ = 0;
  std::string file_digest_;
};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

Result<LayerIndex> IndexFromTocJson(std::string_view toc_json, const TocBlob& blob,
                                    const TocLimits& limits) {
  const std::string context = "TOC of layer " + blob.digest;
  if (toc_json.size() > kMaxTocJsonBytes) {
    return Status::Corrupt(context + " is " + std::to_string(toc_json.size()) +
                           " bytes of JSON, more than the limit of " +
                           std::to_string(kMaxTocJsonBytes));
  }
  try {
    TocConverter converter(blob);
    Status s = ForEachTocEntry(toc_json, limits,
                               [&](TocEntryFields& entry) { return converter.AddEntry(entry); });
    if (!s.ok()) return s.WithContext(context);
    Result<LayerIndex> index = converter.Finish();
    if (!index.ok()) return index.status().WithContext(context);
    return index;
  } catch (const std::bad_alloc&) {
    return Status::Corrupt(context + " is too large to index");
  }
}

std::vector<std::vector<ChunkCheck>> UnitChecks(const LayerIndex& index) {
  std::vector<std::vector<ChunkCheck>> checks(index.units.size());
  for (const Entry& e : index.entries) {
    for (const Chunk& c : e.chunks) {
      if (c.unit == Chunk::kZeroUnit || c.unit >= index.units.size() ||
          !index.units[c.unit].sha256.empty()) {
        continue;
      }
      // An empty digest never matches a hash: the unit is refused, not served unverified.
      checks[c.unit].push_back({c.unit_offset, c.length, c.sha256});
    }
  }
  for (auto& list : checks) {
    std::sort(list.begin(), list.end(), [](const ChunkCheck& a, const ChunkCheck& b) {
      return std::tie(a.unit_offset, a.length, a.sha256) <
             std::tie(b.unit_offset, b.length, b.sha256);
    });
    // Files that share content (hard links, identical chunks) list a chunk more than once.
    list.erase(std::unique(list.begin(), list.end(),
                           [](const ChunkCheck& a, const ChunkCheck& b) {
                             return a.unit_offset == b.unit_offset && a.length == b.length &&
                                    a.sha256 == b.sha256;
                           }),
               list.end());
  }
  return checks;
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
                                    " hashes to " + got + ", its TOC digest is " +
                                    (c.sha256.empty() ? "missing" : c.sha256));
    }
  }
  return Status::Ok();
}

Result<std::string> DecodeAndVerifyUnit(const Unit& unit, const std::vector<ChunkCheck>& checks,
                                        std::string_view compressed) {
  if (checks.empty()) {
    return Status::Corrupt("unit at compressed offset " + std::to_string(unit.coff) +
                           " has neither a digest nor chunk digests: it cannot be verified");
  }
  IMGFS_ASSIGN_OR_RETURN(std::string decoded, DecodeUnit(unit, compressed));
  Status s = VerifyDecodedUnit(checks, decoded);
  if (!s.ok()) {
    return s.WithContext("unit at compressed offset " + std::to_string(unit.coff));
  }
  return decoded;
}
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

}  // namespace imgfs::fs
