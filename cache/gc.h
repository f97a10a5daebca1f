// Garbage collection: the eviction policy over the seams of cache/eviction.h, what
// `imgfs cache gc` and the automatic size limit (cache/auto_gc.h) run.
//
// What counts is disk space: the blocks the blob files take (st_blocks), so the holes of
// sparse, partly fetched blobs cost nothing. The index (metadata) is not counted or evicted.
//
// The policy (PlanGc), over the blobs that no live process pins:
//   1. with `drop_unreferenced`, every blob that no image in the cache references (after
//      `imgfs rmi`, an old manifest of a moved tag, bytes a crash left without records);
//   2. then, while the disk bytes are above `max_bytes`, blobs in order of last access, the
//      unreferenced before the referenced, oldest first. A blob is dropped whole, except the
//      last one needed when it is partly present and bigger than what is still to free: its
//      units are punched out from its end (units have no access times of their own; the
//      start of a layer holds what prefetching fetches first) until enough is freed.
// A pinned blob is never touched: if the pinned blobs alone are above the limit, the cache
// stays above it (GcReport::pinned_bytes says by how much).
//
// CollectGarbage runs a plan under an exclusive flock(2) on <root>/gc.lock, so two collectors
// (processes or threads) never work on one root at once; it re-reads the pins just before
// each blob is dropped or trimmed (a mount that started after the plan keeps its blobs), and
// measures again after the plan, planning once more when estimates fell short. A reader that
// raced with it and lost its bytes fetches them again (the cache heals).
//
// Thread-safety: free functions; safe from many threads and processes at once.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"
#include "cache/eviction.h"

namespace imgfs::cache {

struct GcPolicy {
  std::optional<uint64_t> max_bytes;  // disk bytes of blob files to stay at or under
  bool drop_unreferenced = false;
  // Only decoded files go (cache/decoded_files.h), down to max_bytes: room for another one,
  // never at the cost of a unit.
  bool decoded_files_only = false;
};

// One step of a plan: drop a blob whole, or punch some of its units out.
struct GcAction {
  std::string digest;
  bool whole = true;
  std::vector<uint64_t> punch_coffs;  // when !whole: the units' offsets, last unit first
  uint64_t bytes = 0;                 // disk bytes it is expected to free
  bool referenced = false;
  bool decoded_only = false;  // when !whole: only the blob's decoded files go, no unit
};

// The plan for `blobs` (Eviction::ListBlobs) under `policy`. `referenced` and `pinned` are
// blob digests ("sha256:<hex>"). `units_of` lists a partly present blob's units (asked only
// for the one blob that is trimmed rather than dropped). Pure: no I/O of its own.
std::vector<GcAction> PlanGc(
    const std::vector<BlobUsage>& blobs, const std::set<std::string>& pinned,
    const std::set<std::string>& referenced, const GcPolicy& policy,
    const std::function<std::vector<UnitUsage>(const std::string&)>& units_of);

struct GcReport {
  std::vector<GcAction> done;  // what was dropped or trimmed
  uint64_t bytes_before = 0;   // disk bytes of the blob files before the pass
  uint64_t bytes_after = 0;    // and after
  uint64_t pinned_bytes = 0;   // disk bytes of pinned blobs after the pass
  int skipped_pinned = 0;      // planned steps skipped because a pin appeared meanwhile

  uint64_t freed() const { return bytes_before > bytes_after ? bytes_before - bytes_after : 0; }
};

// Runs PlanGc over what `cache` holds now, under <root>/gc.lock (see above). `referenced` is
// the set of blobs images reference (cli/cache_usage.h computes it). Errors of a single drop
// are logged and the pass goes on; listing errors fail it.
Result<GcReport> CollectGarbage(Cache& cache, const std::set<std::string>& referenced,
                                const GcPolicy& policy);

// The disk bytes of the blob files in `blobs`.
uint64_t DiskBytes(const std::vector<BlobUsage>& blobs);

}  // namespace imgfs::cache
