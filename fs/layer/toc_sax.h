// Walking a TOC's JSON without a document tree (nlohmann's SAX interface). Internal to
// fs/layer: toc.cc turns the entries it yields into a LayerIndex.
//
// The walk follows {"version": 1, "entries": [{...}, ...]}: it collects the scalar fields of one
// entry (and its "xattrs" object) and hands them over as soon as the entry's object ends, then
// reuses the same buffers for the next entry, so memory grows with what is kept, not with the
// document. Anything else in the document is skipped whatever its shape, up to kMaxTocNesting
// levels deep. Limits are enforced when they are crossed, mid-document.
//
// Thread-safety: pure functions. Failure: kCorrupt (malformed JSON or schema, a limit crossed),
// kUnsupported (a TOC version other than 1), or the sink's error; errors inside an entry carry
// "TOC entry N (name)" as context.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "fs/layer/toc.h"

namespace imgfs::fs {

// The fields of one TOC entry, as the JSON gives them; absent or null fields are 0 or "".
struct TocEntryFields {
  enum Field : uint8_t {
    kOffset,
    kEndOffset,
    kSize,
    kMode,
    kUid,
    kGid,
    kDevMajor,
    kDevMinor,
    kChunkOffset,
    kChunkSize,
    kInnerOffset,
    kNumberFields,
    kType = kNumberFields,
    kName,
    kModtime,
    kLinkName,
    kDigest,
    kChunkType,
    kChunkDigest,
    kFieldCount
  };
  static constexpr const char* kNames[kFieldCount] = {
      "offset",   "endOffset", "size",        "mode",      "uid",         "gid",
      "devMajor", "devMinor",  "chunkOffset", "chunkSize", "innerOffset", "type",
      "name",     "modtime",   "linkName",    "digest",    "chunkType",   "chunkDigest"};

  uint64_t numbers[kNumberFields] = {};
  std::string strings[kFieldCount - kNumberFields];
  std::vector<std::pair<std::string, std::string>> xattrs;  // name -> base64 value

  // Forgets the fields, keeping the buffers.
  void Clear() {
    std::fill(std::begin(numbers), std::end(numbers), 0);
    for (std::string& s : strings) s.clear();
    xattrs.clear();
  }
  uint64_t number(Field f) const { return numbers[f]; }
  std::string& string(Field f) { return strings[f - kNumberFields]; }
  static std::optional<Field> Find(std::string_view key) {
    for (int f = 0; f < kFieldCount; ++f) {
      if (key == kNames[f]) return static_cast<Field>(f);
    }
    return std::nullopt;
  }
};

// Receives each entry; a non-OK Status stops the walk.
using TocEntrySink = std::function<Status(TocEntryFields& entry)>;

// Walks `toc_json`, calling `sink` for each entry in document order. Enforces limits.max_entries
// and limits.max_xattrs_per_entry, kMaxXattrName and kMaxTocNesting while it walks.
Status ForEachTocEntry(std::string_view toc_json, const TocLimits& limits,
                       const TocEntrySink& sink);

// kCorrupt: `what` "`text`" (shortened) is N bytes long, more than the limit of `limit`.
Status TooLong(std::string_view what, std::string_view text, size_t limit);

}  // namespace imgfs::fs
