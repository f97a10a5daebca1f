// TarReader: a push (streaming) parser of the tar stream inside a layer.
//
// The caller feeds the uncompressed layer stream in pieces of any size; the reader reports each
// archive member as an fs::Entry (path cleaned, whiteouts applied, PAX/GNU extension records
// folded in) together with the stream offset where a regular file's content starts. Content
// bytes are skipped, never buffered: memory stays bounded by the largest extension record.
//
// Formats: ustar (prefix + name), star, old GNU and V7 headers, GNU long names/links ('L'/'K'),
// PAX extended headers (path, linkpath, size, uid, gid, mtime with fractional seconds,
// SCHILY.xattr.*, LIBARCHIVE.xattr.*), base-256 numeric fields, GNU sparse members (old 'S',
// PAX 0.0, 0.1 and 1.0: their entry carries the chunks, see below). The reading is Go's
// archive/tar's, which docker and containerd extract with:
//   - of several 'x' headers before a member only the last applies; a GNU long name or link
//     wins over the PAX path/linkpath; a PAX record with an empty value keeps the header's;
//   - global ('g') headers are checked and then ignored (docker skips them), and they end
//     whatever extension records were pending;
//   - PAX numbers are Go's ParseInt (sign, leading zeros);
//   - names are cleaned by CleanPath (a rooted ".." stays at the root, an escape is an error,
//     NAME_MAX/PATH_MAX enforced); symlink targets are kept as stored but may not exceed
//     PATH_MAX; names docker never extracts (IsDroppedName) are dropped.
// Members of unknown types are skipped (with their data) and logged.
//
// Limits (docs/architecture.md): an extended header ('x', 'g', 'L', 'K') holds at most 1 MiB
// (Go's maxSpecialFileSize); xattrs per ValidateXattrs; sparse maps per tar_sparse.h.
//
// A sparse member's Entry comes with its chunks laid out: holes have unit Chunk::kZeroUnit,
// data regions unit 0 and unit_offset = the offset of their bytes from `data_offset`. Other
// regular files have no chunks; their content is entry.size bytes at `data_offset`.
//
// End of archive: two zero blocks; anything after them is ignored. A stream that simply stops
// on a header boundary is accepted too (some tools omit the end blocks). Malformed input (bad
// checksum, bad number, a size that overflows, PAX records whose lengths lie, a name that
// escapes the root) gives kCorrupt naming the stream offset; the error is sticky.
//
// Directories that only appear implicitly (a/b/c without an entry for a/b) are not invented:
// that is the merged tree's job.
//
// Thread-safety: none; one reader per stream.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

class TarReader {
 public:
  // Receives each member in archive order. `data_offset` is the stream offset of the member's
  // first content byte (meaningful for regular files; see above for sparse ones).
  // A non-OK Status stops the parse and is returned by Feed.
  using EntrySink = std::function<Status(Entry entry, uint64_t data_offset)>;

  explicit TarReader(EntrySink sink);
  ~TarReader();

  // Consumes the next `bytes` of the stream.
  Status Feed(std::string_view bytes);
  // The stream has ended: OK when it ended cleanly, kCorrupt when it stopped inside a member.
  Status Finish();

  // True once the end-of-archive blocks have been seen.
  bool at_end() const { return state_ == State::kEnd; }
  // Bytes consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  enum class State { kHeader, kSparseExt, kSparseMap, kSkip, kCollect, kEnd };

  Status ProcessBlock();
  Status ProcessHeader();
  Status FinishCollect();
  Status EmitEntry(const uint8_t* h, char typeflag, uint64_t at);
  Status ProcessSparseBlock();
  Status DeliverSparse(uint64_t data_offset);
  Status Deliver(Entry entry, uint64_t data_offset);
  Status Fail(uint64_t at, const std::string& message);

  EntrySink sink_;
  State state_ = State::kHeader;
  uint64_t offset_ = 0;
  Status error_;

  uint8_t header_[512];
  size_t header_fill_ = 0;
  uint64_t header_offset_ = 0;
  bool zero_block_seen_ = false;

  uint64_t skip_remaining_ = 0;

  std::string collect_;
  uint64_t collect_remaining_ = 0;
  uint64_t collect_padding_ = 0;
  char collect_type_ = 0;
  uint64_t collect_offset_ = 0;

  // Extension records waiting for the next real member (the last 'x' header's only).
  std::optional<std::string> gnu_long_name_;
  std::optional<std::string> gnu_long_link_;
  std::map<std::string, std::string> pax_local_;

  // A sparse member whose map is still being read (old GNU extension blocks, PAX 1.0 map).
  struct PendingSparse;
  std::unique_ptr<PendingSparse> sparse_;
};

}  // namespace imgfs::fs
