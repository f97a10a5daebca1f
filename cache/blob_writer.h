// The BlobWriter of cache/cache.h: a whole blob streamed into a private temporary file next to
// its blob file, hashed as it goes, and at Commit fsync'd, renamed over the blob file and
// marked complete in the index. Until Commit nothing of it is visible; a writer destroyed
// uncommitted (or that failed) removes its file. A writer holds an exclusive flock(2) on its
// file while it lives, so the file of one that died (killed: nothing removed it) is known by
// a lock that can be taken; the next writer of the blob adopts it and resumes after its bytes
// (BlobWriter::resumed_bytes).
//
// Thread-safety: one writer is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cache/cache.h"

namespace imgfs::cache {

class UnitStore;

// Creates `<blob dir>/<hex>.tmp.<pid>.<n>` for blob `digest` of `size` bytes. Of the temporary
// files of that blob that writers which died left behind, the longest (at most `size` bytes)
// is adopted as the new writer's file, the others are removed. `keep_alive` keeps `store`
// alive for as long as the writer lives.
Result<std::unique_ptr<BlobWriter>> NewBlobWriter(UnitStore* store, std::string_view digest,
                                                  uint64_t size,
                                                  std::shared_ptr<const void> keep_alive);

}  // namespace imgfs::cache
