// AutoGc: a size limit on the cache, applied by every process while it writes the cache (a
// mount, a pull), without a separate command.
//
// The store reports every unit it publishes and every whole blob it commits (NoteWritten).
// Once the bytes this process published since the last pass reach the step, the writing
// thread runs one pass of CollectGarbage (cache/gc.h: the unreferenced first, then the least
// recently used, never a pinned blob) down to the limit before its write returns. So passes
// are throttled by bytes, not run per unit, and a reader never sees a pass run ahead of it.
// One pass at a time per process: a writer that crosses the step while a pass runs leaves it
// to that pass's thread, which runs again before it returns. Across processes the passes are
// serialized by gc.lock.
//
// Slack: when writing stops, the blob files take at most
//     limit + step (per process writing) + blobs being written whole (their .tmp files)
// except that pinned blobs are never evicted, so an image mounted now that is bigger than the
// limit keeps the cache above it (a warning is logged once per process).
//
// Thread-safety: all methods may be called from many threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "base/mutex.h"
#include "base/status.h"
#include "cache/cache.h"

namespace imgfs::cache {

// The step for `max_bytes`: 1/32 of it, at least 256 KiB, at most 64 MiB.
uint64_t AutoGcStep(uint64_t max_bytes);

class AutoGc {
 public:
  // Sets the limit (0: none) and how to learn which blobs images reference.
  void Configure(uint64_t max_bytes, ReferencedBlobsFn referenced) EXCLUDES(mu_);

  // Counts `bytes` as written. True when a pass is due and this thread must run it now
  // (RunPasses); false when none is due or another thread is running one.
  bool NoteWritten(uint64_t bytes) EXCLUDES(mu_);

  // Runs passes over `cache` until fewer than a step's bytes were written meanwhile.
  // REQUIRES: NoteWritten returned true on this thread.
  void RunPasses(Cache& cache) EXCLUDES(mu_);

  // The limit (0: none).
  uint64_t max_bytes() EXCLUDES(mu_);
  // Passes run by this process so far.
  uint64_t passes() EXCLUDES(mu_);

 private:
  Mutex mu_;
  uint64_t max_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t step_ GUARDED_BY(mu_) = 0;
  ReferencedBlobsFn referenced_ GUARDED_BY(mu_);
  uint64_t since_pass_ GUARDED_BY(mu_) = 0;  // bytes written since the last pass started
  bool running_ GUARDED_BY(mu_) = false;
  bool warned_pinned_ GUARDED_BY(mu_) = false;
  uint64_t passes_ GUARDED_BY(mu_) = 0;
};

}  // namespace imgfs::cache
