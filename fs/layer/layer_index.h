// LayerIndex: what imgfs knows about one layer blob, whatever its format.
//
// Every layer format (uncompressed tar, gzip tar, eStargz, zstd:chunked) is described by the
// same two lists, built once per blob digest and kept in the cache:
//
//   entries  the layer's tar entries in archive order, with names cleaned and PAX/GNU records
//            applied; each regular file's content is a list of Chunks.
//   units    the fetch units of the compressed blob: a compressed range [coff, coff + clen)
//            with the sha256 its bytes must have, and how to decode it.
//
// A read of file bytes [off, off + n) finds the chunks that overlap it; each chunk says which
// unit holds its bytes and where they start in that unit's decoded output. Decoding a unit
// needs only the unit's own compressed bytes (plus, for zran, the window stored in the unit).
//
// Values; no thread-safety concerns. Serialize/Deserialize use a versioned binary format;
// Deserialize rejects anything malformed with kCorrupt (the cache is outside data too).
// layer_index.cc implements the index's serialization and invariants; entry_names.cc the limits
// on names and the name helpers below them, which every layer parser applies to what it reads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace imgfs::fs {

enum class UnitCodec : uint8_t {
  kRaw = 0,         // uncompressed tar bytes: decoded == compressed
  kZran = 1,        // a span of a gzip stream, entered at a zran checkpoint
  kGzipMember = 2,  // one whole gzip member (eStargz chunk), decoded from its start
  kZstdFrame = 3,   // one or more whole zstd frames (zstd:chunked chunk)
};

struct Unit {
  UnitCodec codec = UnitCodec::kRaw;
  uint64_t coff = 0;  // compressed range inside the blob
  uint64_t clen = 0;
  std::string sha256;  // "sha256:<hex>" of the compressed range
  uint64_t ulen = 0;   // decoded length of the unit
  // kZran only. The checkpoint at the unit's start: when `bits` != 0 the first byte of the
  // range (at coff) holds `bits` still-unused bits of the deflate stream (zran.c's
  // inflatePrime), otherwise decoding starts at coff on a byte boundary. `window` is the
  // 32 KiB (or shorter, near a stream start) of output before the checkpoint; empty when the
  // unit starts at the beginning of a gzip member (`at_member_start`), whose header is then
  // part of the range. The zran decoder continues across member boundaries.
  uint8_t bits = 0;
  bool at_member_start = false;
  std::string window;
  // An index read from the cache (format 5) leaves the window as it is stored: one zstd frame
  // (with its content size and checksum) inside `window_record`, the record's bytes, which the
  // index's units share. Only the decoder of this unit needs it (UnitWindow), so a mount does
  // not decode or copy ~90% of a gzip index's bytes up front. Empty when `window` holds the
  // window or there is none.
  std::shared_ptr<const std::string> window_record{};
  std::string_view window_frame{};
};

// The window of a kZran unit: `unit.window`, or its stored frame decoded into `*scratch`.
// kCorrupt (naming the unit) when the frame does not decode to what it states, at most 32 KiB.
Result<std::string_view> UnitWindow(const Unit& unit, std::string* scratch);

enum class EntryType : uint8_t {
  kRegular = 0,
  kDirectory = 1,
  kSymlink = 2,
  kHardlink = 3,  // link_target names an earlier entry (this or a lower layer)
  kCharDevice = 4,
  kBlockDevice = 5,
  kFifo = 6,
};

// A piece of a regular file's content: bytes [file_offset, file_offset + length) of the file
// are bytes [unit_offset, unit_offset + length) of unit `unit`'s decoded output. kZeroUnit
// marks a hole (zstd:chunked "zeros"), served without any fetch.
struct Chunk {
  static constexpr uint32_t kZeroUnit = 0xffffffffu;
  uint64_t file_offset = 0;
  uint64_t length = 0;
  uint32_t unit = 0;
  uint64_t unit_offset = 0;
  // "sha256:<hex>" of the chunk's DECODED bytes (eStargz/zstd:chunked chunkDigest); "" when
  // the unit's own compressed digest covers it. A unit with an empty Unit::sha256 is trusted
  // only through the digests of the chunks that point at it (see estargz.h). The braces keep
  // brace-initialized Chunks of four values free of -Wmissing-field-initializers.
  std::string sha256{};
};

struct Entry {
  // Cleaned path relative to the layer root: no leading "/" or "./", no trailing "/", no "."
  // or ".." components; "" is the root directory itself.
  std::string path;
  EntryType type = EntryType::kRegular;
  uint32_t mode = 0;  // permission bits including setuid/setgid/sticky (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime_sec = 0;
  uint32_t mtime_nsec = 0;
  uint64_t size = 0;        // regular files only
  std::string link_target;  // symlink target as stored; hard link: cleaned path of the target
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;  // name -> raw value, tar order
  // OCI whiteouts. A ".wh.NAME" entry becomes {path = dir/NAME, whiteout = true}; a
  // ".wh..wh..opq" entry becomes {path = dir, opaque = true}. Such entries carry no other
  // meaning; the parsers of every format produce them the same way.
  bool whiteout = false;
  bool opaque = false;
  std::vector<Chunk> chunks;  // regular files: sorted by file_offset, covering [0, size)
};

// What the manifest says of one layer (copied out of registry's Descriptor by the caller): the
// input of every layer indexer.
struct LayerDescriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::map<std::string, std::string> annotations;
  // The image config's rootfs.diff_ids entry for this layer: the sha256 of its uncompressed
  // tar, checked whenever the layer is streamed whole. "" when not known (not checked).
  std::string diff_id;
};

struct LayerIndex {
  std::string blob_digest;  // "sha256:<hex>" of the compressed blob
  std::string format;       // "tar", "gzip", "estargz", "zstd:chunked"
  uint64_t blob_size = 0;
  std::vector<Entry> entries;
  std::vector<Unit> units;
  // Compressed offset where the eStargz prioritized (prefetch landmark) region ends; 0 = none.
  uint64_t prefetch_end = 0;
  // "sha256:<hex>" of the layer's whole uncompressed stream, as imgfs computed it when it
  // decoded the whole blob: always for the streamed formats (tar, gzip: the index pass), for
  // TOC formats once every unit was in the cache and the stream was hashed (fs/tree/
  // layer_check.h). "" = never hashed. Compared with the image config's diff_id whenever the
  // index is used (fs/layer/layer_builder.h), so a cached index cannot skip that check.
  std::string diff_id;

  // Serialize writes the current version (5). A window held as a stored frame is copied as
  // it is, one held in `window` is compressed into a frame of its own.
  std::string Serialize() const;
  // Copies what the index keeps of `bytes` (the windows of version 5).
  static Result<LayerIndex> Deserialize(std::string_view bytes);
  // Keeps `bytes` (shared by the units) instead of copying the windows out of it.
  static Result<LayerIndex> Deserialize(std::shared_ptr<const std::string> bytes);
};

// Whether `serialized` (which Deserialize read) is of an older version than Serialize writes:
// the cache then stores it again in the current one (fs/layer/layer_builder.cc).
bool IsOlderLayerIndexVersion(std::string_view serialized);

// The uncompressed body of a version-4 LayerIndex (its fields with every window inline, no
// header), and its reader, for containers that wrap an index differently (fs/layer/
// shared_index.h). SerializeLayerIndexBody decodes stored window frames: kCorrupt when one
// does not decode.
// DeserializeLayerIndexBody refuses more than `max_entries` entries or `max_units` units
// (kCorrupt naming the count and the limit) before it allocates them, and applies
// ValidateLayerIndex.
Result<std::string> SerializeLayerIndexBody(const LayerIndex& index);
Result<LayerIndex> DeserializeLayerIndexBody(std::string_view body, uint64_t max_entries,
                                             uint64_t max_units);

// The indexes of `index`'s units with bytes (clen > 0), sorted by compressed offset: the order
// in which a whole-blob pass meets them.
std::vector<uint32_t> UnitsInBlobOrder(const LayerIndex& index);

// The heap bytes `index` holds: its vectors by capacity and the strings that do not fit in
// place (libstdc++ keeps up to 15 bytes inside the std::string), with the LayerIndex itself;
// malloc's own overhead (8-16 bytes a block) is not counted. What a mount keeps in memory per
// layer, as long as it serves it (`imgfs stats`). One pass over the entries.
uint64_t LayerIndexMemoryBytes(const LayerIndex& index);

// Checks the invariants every reader relies on: valid digests (a kGzipMember/kZstdFrame unit
// from a TOC may have an empty sha256, see estargz.h, but then every chunk pointing at it
// carries a Chunk::sha256), known codecs and entry types, chunks sorted, contiguous, covering
// [0, size) and inside their unit's decoded length, prefetch_end inside the blob.
// Deserialize applies it to what it reads; builders apply it before storing an index.
Status ValidateLayerIndex(const LayerIndex& index);

// Limits on names from outside data (docs/architecture.md, "Limits on outside data"). They are
// the kernel's: a name beyond them could not be extracted (ENAMETOOLONG, E2BIG, ERANGE), so
// docker's and containerd's extraction fails on it; imgfs refuses the layer the same way.
inline constexpr size_t kMaxNameComponent = 255;  // NAME_MAX, one path component
inline constexpr size_t kMaxPathLength = 4095;    // PATH_MAX (4096) with its NUL
inline constexpr size_t kMaxXattrsPerEntry = 1024;
inline constexpr size_t kMaxXattrName = 255;        // XATTR_NAME_MAX
inline constexpr size_t kMaxXattrValue = 65536;     // XATTR_SIZE_MAX
inline constexpr size_t kMaxXattrNameList = 65536;  // XATTR_LIST_MAX: all names, NULs included
inline constexpr size_t kMaxXattrBytesPerEntry = size_t{1} << 20;  // names + values

// A name for error messages: at most ~80 bytes of `name`, with its length when cut.
std::string AbbreviateName(std::string_view name);

// Cleans a tar member name into Entry::path form ("./usr//bin/" -> "usr/bin"), as docker's
// filepath.Clean + Join does: a ".." that would climb above a leading "/" stays at the root
// ("/../etc" -> "etc"); a relative name that climbs out of the root ("../x", "a/../../x") is
// kCorrupt naming it. Then ValidateEntryName.
Result<std::string> CleanPath(std::string_view name);

// kCorrupt, naming the (abbreviated) path, when a cleaned path breaks the limits above: a
// component over kMaxNameComponent or the whole over kMaxPathLength (which also bounds a
// path's depth: at most 2048 components). Every layer parser (tar and TOC formats) gets it through
// CleanPath, and ValidateLayerIndex checks it again.
Status ValidateEntryName(std::string_view path);

// kCorrupt naming the entry when its xattrs break the limits above (count, name and value
// sizes, the listed names' total, names + values). ValidateLayerIndex applies it to every entry.
Status ValidateXattrs(const Entry& entry);

// Turns a cleaned path whose last component starts with ".wh." into a whiteout or opaque
// marker on `entry` (path rewritten as described above). Returns true when it did.
bool ApplyWhiteoutName(Entry* entry);

// True for a cleaned path that docker's extraction never turns into a file, which the layer
// parsers therefore drop: a degenerate whiteout (last component ".wh.", ".wh..", ".wh...") and
// AUFS metadata at the root (".wh..wh.plnk/...", any root name starting ".wh..wh." other than
// the opaque marker ".wh..wh..opq").
bool IsDroppedName(std::string_view path);

}  // namespace imgfs::fs
