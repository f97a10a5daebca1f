// LayerIndex serialization and validation (the name helpers every layer parser shares are in
// entry_names.cc).
//
// Serialized form (all integers are LEB128 varints unless noted):
//   "IMGFSLIX"                   8-byte magic
//   version                      currently 5; 4, 3 and 2 are still read (2's diff_id is ""); any
//                                other is kCorrupt, so the cache entry is rebuilt and replaced
//   body_len                     length of the body once decompressed
//   body_zlen                    version 5 only: the length of the compressed body
//   compressed body              version 5, body_zlen bytes of one zstd frame with its content
//                                size and XXH64 checksum; version 4, the same frame as the rest
//                                of the bytes; versions 2 and 3, a zlib stream (adler32) as
//                                the rest. Either catches bit rot
//   windows                      version 5 only, the rest: each zran unit's window, in unit
//                                order, as a zstd frame of its own (content size, XXH64)
// body:
//   blob_digest, format (strings: len + bytes), blob_size, prefetch_end, diff_id (string,
//   version 3 and later)
//   entry_count, entries..., unit_count, units...
//   each unit ends with its window: inline (len + bytes) up to version 4, the length of its
//   frame in the windows section in version 5
//   (version 2 added prefetch_end and each chunk's decoded-bytes sha256; version 3 the
//   diff_id hashed from the layer's whole uncompressed stream; version 4 only changed the
//   codec: zstd decodes the body several times faster than zlib, and a mount decodes the
//   index of every layer before it is ready; version 5 moved the windows, ~90% of a gzip
//   index's bytes, out of the body, so that a mount decodes and copies only the body and
//   each window is decoded when its unit is)
// The body is compressed as a whole because entries (paths) shrink well, and one stream is
// simpler than per-field codecs.
#include "fs/layer/layer_index.h"

#include <algorithm>
#include <limits>
#include <memory>

#include "base/digest.h"
#include "fs/layer/index_codec.h"

namespace imgfs::fs {
namespace {

constexpr std::string_view kMagic = "IMGFSLIX";
constexpr uint64_t kVersion = 5;
// Version 4 is version 5 with the windows inline in one zstd body: still read, and the body
// of a shared index (fs/layer/shared_index.h).
constexpr uint64_t kVersionInline = 4;
// Version 3 is version 4's body compressed with zlib: still read.
constexpr uint64_t kVersionZlib = 3;
// Indexes of version 2 differ only in lacking the diff_id: still read, as unchecked.
constexpr uint64_t kVersionWithoutDiffId = 2;
// An index is a few MiB even for huge layers; anything claiming more is not ours.
constexpr uint64_t kMaxBodyLen = uint64_t{1} << 31;
// The shortest entry record WriteEntry makes: one byte for each of its 14 fields.
constexpr uint64_t kMinEntryBytes = 14;
constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

class Writer {
 public:
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Signed(int64_t v) {
    // zigzag: small negative mtimes stay small.
    Varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
  }
  void Byte(uint8_t b) { out_.push_back(static_cast<char>(b)); }
  void Str(std::string_view s) {
    Varint(s.size());
    out_.append(s);
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= in_.size()) return false;
      uint8_t b = static_cast<uint8_t>(in_[pos_++]);
      if (shift == 63 && b > 1) return false;  // would overflow 64 bits
      result |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool U32(uint32_t* v) {
    uint64_t x;
    if (!Varint(&x) || x > std::numeric_limits<uint32_t>::max()) return false;
    *v = static_cast<uint32_t>(x);
    return true;
  }
  bool Signed(int64_t* v) {
    uint64_t x;
    if (!Varint(&x)) return false;
    *v = static_cast<int64_t>((x >> 1) ^ (~(x & 1) + 1));
    return true;
  }
  bool Byte(uint8_t* b) {
    if (pos_ >= in_.size()) return false;
    *b = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool Str(std::string* s) {
    uint64_t len;
    if (!Varint(&len) || len > in_.size() - pos_) return false;
    s->assign(in_.substr(pos_, len));
    pos_ += len;
    return true;
  }
  // A count of items that each take at least `min_item_bytes`: bounded by what is left, so a
  // lying count cannot make us reserve gigabytes.
  bool Count(uint64_t* n, uint64_t min_item_bytes) {
    if (!Varint(n)) return false;
    return *n <= (in_.size() - pos_) / min_item_bytes;
  }
  bool AtEnd() const { return pos_ == in_.size(); }
  size_t pos() const { return pos_; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

void WriteEntry(Writer& w, const Entry& e) {
  w.Str(e.path);
  w.Byte(static_cast<uint8_t>(e.type));
  w.Varint(e.mode);
  w.Varint(e.uid);
  w.Varint(e.gid);
  w.Signed(e.mtime_sec);
  w.Varint(e.mtime_nsec);
  w.Varint(e.size);
  w.Str(e.link_target);
  w.Varint(e.dev_major);
  w.Varint(e.dev_minor);
  w.Varint(e.xattrs.size());
  for (const auto& [name, value] : e.xattrs) {
    w.Str(name);
    w.Str(value);
  }
  w.Byte(static_cast<uint8_t>((e.whiteout ? 1 : 0) | (e.opaque ? 2 : 0)));
  w.Varint(e.chunks.size());
  for (const Chunk& c : e.chunks) {
    w.Varint(c.file_offset);
    w.Varint(c.length);
    w.Varint(c.unit);
    w.Varint(c.unit_offset);
    w.Str(c.sha256);
  }
}

// Writes a unit up to its window, which the caller adds in its version's way.
void WriteUnitHead(Writer& w, const Unit& u) {
  w.Byte(static_cast<uint8_t>(u.codec));
  w.Varint(u.coff);
  w.Varint(u.clen);
  w.Str(u.sha256);
  w.Varint(u.ulen);
  w.Byte(u.bits);
  w.Byte(u.at_member_start ? 1 : 0);
}

bool ReadEntry(Reader& r, Entry* e) {
  uint8_t type, flags;
  uint64_t nxattrs, nchunks;
  if (!r.Str(&e->path) || !r.Byte(&type) || !r.U32(&e->mode) || !r.U32(&e->uid) ||
      !r.U32(&e->gid) || !r.Signed(&e->mtime_sec) || !r.U32(&e->mtime_nsec) ||
      !r.Varint(&e->size) || !r.Str(&e->link_target) || !r.U32(&e->dev_major) ||
      !r.U32(&e->dev_minor) || !r.Count(&nxattrs, 2)) {
    return false;
  }
  if (type > static_cast<uint8_t>(EntryType::kFifo)) return false;
  e->type = static_cast<EntryType>(type);
  e->xattrs.resize(nxattrs);
  for (auto& [name, value] : e->xattrs) {
    if (!r.Str(&name) || !r.Str(&value)) return false;
  }
  if (!r.Byte(&flags) || flags > 3) return false;
  e->whiteout = flags & 1;
  e->opaque = flags & 2;
  if (!r.Count(&nchunks, 5)) return false;
  e->chunks.resize(nchunks);
  for (Chunk& c : e->chunks) {
    if (!r.Varint(&c.file_offset) || !r.Varint(&c.length) || !r.U32(&c.unit) ||
        !r.Varint(&c.unit_offset) || !r.Str(&c.sha256)) {
      return false;
    }
  }
  return true;
}

// Where version 5 keeps the windows: the record's section of frames, read in unit order.
struct WindowSection {
  std::shared_ptr<const std::string> record;
  std::string_view frames;  // inside *record
  size_t pos = 0;
};

// `windows` is null for the versions with the windows inline.
bool ReadUnit(Reader& r, Unit* u, WindowSection* windows) {
  uint8_t codec, at_start;
  if (!r.Byte(&codec) || codec > static_cast<uint8_t>(UnitCodec::kZstdFrame)) return false;
  u->codec = static_cast<UnitCodec>(codec);
  if (!r.Varint(&u->coff) || !r.Varint(&u->clen) || !r.Str(&u->sha256) || !r.Varint(&u->ulen) ||
      !r.Byte(&u->bits) || !r.Byte(&at_start) || at_start > 1) {
    return false;
  }
  u->at_member_start = at_start == 1;
  if (windows == nullptr) return r.Str(&u->window);
  uint64_t len;
  if (!r.Varint(&len) || len > windows->frames.size() - windows->pos) return false;
  if (len == 0) return true;
  // Its frame's form is checked with the rest of the index (ValidateLayerIndex).
  u->window_frame = windows->frames.substr(windows->pos, len);
  windows->pos += len;
  u->window_record = windows->record;
  return true;
}

Result<LayerIndex> ParseBody(std::string_view body, uint64_t version, uint64_t max_entries,
                             uint64_t max_units, WindowSection* windows) {
  auto over = [](uint64_t n, const char* what, uint64_t limit) {
    return Status::Corrupt("layer index: " + std::to_string(n) + " " + what +
                           ", more than the limit of " + std::to_string(limit));
  };
  Reader r(body);
  LayerIndex index;
  uint64_t nentries, nunits;
  if (!r.Str(&index.blob_digest) || !r.Str(&index.format) || !r.Varint(&index.blob_size) ||
      !r.Varint(&index.prefetch_end) ||
      (version != kVersionWithoutDiffId && !r.Str(&index.diff_id)) ||
      !r.Count(&nentries, kMinEntryBytes)) {
    return Status::Corrupt("layer index: truncated body");
  }
  if (nentries > max_entries) return over(nentries, "entries", max_entries);
  index.entries.resize(nentries);
  for (Entry& e : index.entries) {
    if (!ReadEntry(r, &e)) return Status::Corrupt("layer index: bad entry record");
  }
  if (!r.Count(&nunits, 8)) return Status::Corrupt("layer index: bad unit count");
  if (nunits > max_units) return over(nunits, "units", max_units);
  index.units.resize(nunits);
  for (Unit& u : index.units) {
    if (!ReadUnit(r, &u, windows)) return Status::Corrupt("layer index: bad unit record");
  }
  if (!r.AtEnd()) return Status::Corrupt("layer index: trailing bytes");
  if (windows != nullptr && windows->pos != windows->frames.size()) {
    return Status::Corrupt("layer index: trailing window bytes");
  }
  IMGFS_RETURN_IF_ERROR(ValidateLayerIndex(index).WithContext("layer index"));
  return index;
}

// Writes the body's fields up to the units; each unit's window is the caller's.
void WriteBodyHead(Writer& body, const LayerIndex& index) {
  body.Str(index.blob_digest);
  body.Str(index.format);
  body.Varint(index.blob_size);
  body.Varint(index.prefetch_end);
  body.Str(index.diff_id);
  body.Varint(index.entries.size());
  for (const Entry& e : index.entries) WriteEntry(body, e);
  body.Varint(index.units.size());
}

}  // namespace

Result<std::string_view> UnitWindow(const Unit& unit, std::string* scratch) {
  if (unit.window_frame.empty()) return std::string_view(unit.window);
  if (Status s = index_codec::DecodeWindowFrame(unit.window_frame, scratch); !s.ok()) {
    return Status::Corrupt("unit at compressed offset " + std::to_string(unit.coff) + ": " +
                           s.message());
  }
  return std::string_view(*scratch);
}

Result<std::string> SerializeLayerIndexBody(const LayerIndex& index) {
  Writer body;
  WriteBodyHead(body, index);
  std::string scratch;
  for (const Unit& u : index.units) {
    WriteUnitHead(body, u);
    IMGFS_ASSIGN_OR_RETURN(std::string_view window, UnitWindow(u, &scratch));
    body.Str(window);
  }
  return std::move(body.out());
}

std::string LayerIndex::Serialize() const {
  Writer body;
  WriteBodyHead(body, *this);
  std::string windows;
  for (const Unit& u : units) {
    WriteUnitHead(body, u);
    const size_t before = windows.size();
    if (!u.window_frame.empty()) {
      windows.append(u.window_frame);
    } else if (!u.window.empty() && !index_codec::AppendZstdFrame(u.window, &windows)) {
      return std::string();  // out of memory: an empty record fails Deserialize, and is rebuilt
    }
    body.Varint(windows.size() - before);
  }
  const std::string& raw = body.out();
  std::string frame;
  if (!index_codec::AppendZstdFrame(raw, &frame)) return std::string();
  Writer out;
  out.out().append(kMagic);
  out.Varint(kVersion);
  out.Varint(raw.size());
  out.Varint(frame.size());
  out.out().reserve(out.out().size() + frame.size() + windows.size());
  out.out().append(frame);
  out.out().append(windows);
  return std::move(out.out());
}

bool IsOlderLayerIndexVersion(std::string_view serialized) {
  Reader header(serialized.substr(std::min(serialized.size(), kMagic.size())));
  uint64_t version;
  return header.Varint(&version) && version < kVersion;
}

Result<LayerIndex> LayerIndex::Deserialize(std::string_view bytes) {
  return Deserialize(std::make_shared<const std::string>(bytes));
}

Result<LayerIndex> LayerIndex::Deserialize(std::shared_ptr<const std::string> record) {
  const std::string_view bytes = *record;
  if (bytes.size() < kMagic.size() || bytes.substr(0, kMagic.size()) != kMagic) {
    return Status::Corrupt("layer index: bad magic");
  }
  Reader header(bytes.substr(kMagic.size()));
  uint64_t version, body_len;
  if (!header.Varint(&version) || !header.Varint(&body_len)) {
    return Status::Corrupt("layer index: truncated header");
  }
  if (version != kVersion && version != kVersionInline && version != kVersionZlib &&
      version != kVersionWithoutDiffId) {
    return Status::Corrupt("layer index: unknown version " + std::to_string(version));
  }
  if (body_len > kMaxBodyLen) return Status::Corrupt("layer index: implausible size");
  uint64_t body_zlen = 0;
  if (version == kVersion && !header.Varint(&body_zlen)) {
    return Status::Corrupt("layer index: truncated header");
  }
  std::string_view compressed = bytes.substr(kMagic.size() + header.pos());
  WindowSection windows;
  if (version == kVersion) {
    if (body_zlen > compressed.size()) return Status::Corrupt("layer index: truncated body");
    windows.frames = compressed.substr(body_zlen);
    windows.record = std::move(record);
    compressed = compressed.substr(0, body_zlen);
  }
  // Not value-initialized: the decoder writes every byte (or fails), and zeroing MiBs first
  // would cost as much as the decode.
  std::unique_ptr<char[]> body(new char[body_len]);
  IMGFS_RETURN_IF_ERROR(version >= kVersionInline
                            ? index_codec::DecompressZstdBody(compressed, body_len, body.get())
                            : index_codec::InflateBody(compressed, body_len, body.get()));
  return ParseBody(std::string_view(body.get(), body_len), version, kNoLimit, kNoLimit,
                   version == kVersion ? &windows : nullptr);
}

Result<LayerIndex> DeserializeLayerIndexBody(std::string_view body, uint64_t max_entries,
                                             uint64_t max_units) {
  return ParseBody(body, kVersionInline, max_entries, max_units, nullptr);
}

std::vector<uint32_t> UnitsInBlobOrder(const LayerIndex& index) {
  std::vector<uint32_t> order;
  for (uint32_t u = 0; u < index.units.size(); ++u) {
    if (index.units[u].clen > 0) order.push_back(u);
  }
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return index.units[a].coff < index.units[b].coff; });
  return order;
}

Status ValidateLayerIndex(const LayerIndex& index) {
  if (Status s = ValidateDigest(index.blob_digest); !s.ok()) {
    return Status::Corrupt("blob digest: " + s.message());
  }
  if (!index.diff_id.empty()) {
    if (Status s = ValidateDigest(index.diff_id); !s.ok()) {
      return Status::Corrupt("diff_id: " + s.message());
    }
  }
  if (index.prefetch_end > index.blob_size) {
    return Status::Corrupt("prefetch region ends at " + std::to_string(index.prefetch_end) +
                           ", past the end of the " + std::to_string(index.blob_size) +
                           "-byte blob");
  }
  for (size_t i = 0; i < index.units.size(); ++i) {
    const Unit& u = index.units[i];
    std::string where = "unit " + std::to_string(i);
    if (u.codec > UnitCodec::kZstdFrame) return Status::Corrupt(where + ": unknown codec");
    // TOC formats may leave it empty: their trust comes from digests of the decoded chunks
    // (see estargz.h). The streamed pass always hashes its ranges.
    bool toc_codec = u.codec == UnitCodec::kGzipMember || u.codec == UnitCodec::kZstdFrame;
    if (!(toc_codec && u.sha256.empty())) {
      if (Status s = ValidateDigest(u.sha256); !s.ok()) {
        return Status::Corrupt(where + ": " + s.message());
      }
    }
    if (u.coff > index.blob_size || u.clen > index.blob_size - u.coff) {
      return Status::Corrupt(where + ": range lies outside the blob");
    }
    if (u.bits > 7) return Status::Corrupt(where + ": bit offset above 7");
    if (u.window.size() > index_codec::kMaxWindow ||
        (!u.window_frame.empty() && !index_codec::IsWindowFrame(u.window_frame))) {
      return Status::Corrupt(where + ": window above 32 KiB or not a window frame");
    }
    if (u.codec == UnitCodec::kRaw && u.ulen != u.clen) {
      return Status::Corrupt(where + ": raw unit with ulen != clen");
    }
    if (u.codec == UnitCodec::kZran && u.bits != 0 && u.clen == 0) {
      return Status::Corrupt(where + ": bit offset into an empty range");
    }
  }
  for (size_t i = 0; i < index.entries.size(); ++i) {
    const Entry& e = index.entries[i];
    if (e.type > EntryType::kFifo) return Status::Corrupt("entry " + e.path + ": unknown type");
    if (e.mtime_nsec >= 1000000000u) return Status::Corrupt("entry " + e.path + ": bad mtime");
    IMGFS_RETURN_IF_ERROR(ValidateEntryName(e.path));
    IMGFS_RETURN_IF_ERROR(ValidateXattrs(e));
    uint64_t next = 0;
    for (const Chunk& c : e.chunks) {
      if (c.file_offset != next || c.file_offset > e.size || c.length == 0 ||
          c.length > e.size - c.file_offset) {
        return Status::Corrupt("entry " + e.path + ": chunks do not tile the file");
      }
      if (!c.sha256.empty()) {
        if (Status s = ValidateDigest(c.sha256); !s.ok()) {
          return Status::Corrupt("entry " + e.path + ": chunk digest: " + s.message());
        }
      }
      if (c.unit != Chunk::kZeroUnit) {
        if (c.unit >= index.units.size()) {
          return Status::Corrupt("entry " + e.path + ": chunk names a missing unit");
        }
        // Without a compressed digest, the chunk digests are the unit's only trust.
        if (index.units[c.unit].sha256.empty() && c.sha256.empty()) {
          return Status::Corrupt("entry " + e.path + ": chunk at file offset " +
                                 std::to_string(c.file_offset) + " has no digest and its " +
                                 "unit has none either: its bytes cannot be verified");
        }
        uint64_t ulen = index.units[c.unit].ulen;
        if (c.unit_offset > ulen || c.length > ulen - c.unit_offset) {
          return Status::Corrupt("entry " + e.path + ": chunk lies outside its unit");
        }
      }
      next = c.file_offset + c.length;
    }
    if (e.type == EntryType::kRegular && !e.whiteout && next != e.size) {
      return Status::Corrupt("entry " + e.path + ": chunks do not cover the file");
    }
  }
  return Status::Ok();
}

}  // namespace imgfs::fs
