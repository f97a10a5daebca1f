// TarReader: a push (streaming) parser of the tar stream inside a layer.
//
// The caller feeds the uncompressed layer stream in pieces of any size; the reader reports each
// archive member as an fs::Entry (path cleaned, whiteouts applied, PAX/GNU extension records
// folded in) together with the stream offset where a regular file's content starts. Content
// bytes are skipped, never buffered: memory stays bounded by the largest extension record.
//
// Formats: ustar (prefix + name), old GNU and V7 headers, GNU long names/links ('L'/'K'), PAX
// extended ('x') and global ('g') headers (path, linkpath, size, uid, gid, mtime with
// fractional seconds, SCHILY.xattr.*, LIBARCHIVE.xattr.*), base-256 numeric fields. Global
// headers apply their attributes (uid, gid, mtime, xattrs) to later members but never a path,
// link or size, which only make sense for one member. GNU sparse members are kUnsupported.
// Members of unknown types are skipped (with their data) and logged.
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
  // first content byte (meaningful for regular files, whose content is entry.size bytes).
  // A non-OK Status stops the parse and is returned by Feed.
  using EntrySink = std::function<Status(Entry entry, uint64_t data_offset)>;

  explicit TarReader(EntrySink sink);

  // Consumes the next `bytes` of the stream.
  Status Feed(std::string_view bytes);
  // The stream has ended: OK when it ended cleanly, kCorrupt when it stopped inside a member.
  Status Finish();

  // True once the end-of-archive blocks have been seen.
  bool at_end() const { return state_ == State::kEnd; }
  // Bytes consumed so far.
  uint64_t offset() const { return offset_; }

 private:
  enum class State { kHeader, kSkip, kCollect, kEnd };

  Status ProcessHeader();
  Status FinishCollect();
  Status EmitEntry(const uint8_t* h, char typeflag, uint64_t header_offset);
  Status ApplyPax(std::string_view records, bool global);
  Status Fail(uint64_t at, std::string message);

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

  // Extension records waiting for the next real member.
  std::optional<std::string> gnu_long_name_;
  std::optional<std::string> gnu_long_link_;
  std::map<std::string, std::string> pax_local_;
  std::map<std::string, std::string> pax_global_;
};

}  // namespace imgfs::fs
