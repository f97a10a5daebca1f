// Prefetcher: fetches units of a mounted image into the cache before anyone reads them.
//
// Modes (`imgfs mount --prefetch landmark|all|none`):
//   kLandmark (default)  for each layer with LayerIndex::prefetch_end > 0 (eStargz layers
//                        built with a prioritized file list), the units that start before
//                        prefetch_end are fetched with ONE range request per layer (up to
//                        kMaxLandmarkRequestBytes; a region beyond that takes several). Layers
//                        are done in parallel (at most cache::kFetchParallelism at once).
//   kAll                 kLandmark, then every unit of every layer that is not present yet,
//                        in blob order, in the background at low priority: coalesced requests
//                        of about kAllRequestBytes, kAllRequestsInFlight of them side by side
//                        (a slow link stays busy across round trips), pausing while the
//                        mount's own fetches (reads, read-ahead) fill cache::kFetchParallelism
//                        in this process. An eStargz or
//                        zstd:chunked layer that is then whole is checked against the image
//                        config's diff_id (fs/tree/layer_check.h): a mismatch is logged, is
//                        Wait's error, and the layer serves nothing more.
//   kNone                nothing.
// Units are verified like any other fetch (cache::Cache::FetchUnits; units without a sha256
// are decoded and checked against their chunk digests, the decoded bytes then dropped).
//
// Ownership: the Prefetcher shares the mount's ImageLayers; `cache` and `source` are borrowed and
// must outlive it. Work runs on threads started by Start(); the destructor asks them to stop (they
// finish the request in flight) and joins them.
//
// Thread-safety: Start, Wait and stats may be called from any thread; Start at most once.
//
// Failure: never fatal. Errors are logged (kWarning) and the work goes on with the next
// layer or request; Wait reports the first one. A missing source (offline) does nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "base/blob_source.h"
#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "cache/cache.h"
#include "fs/tree/image_layers.h"

namespace imgfs::fs {

class Prefetcher {
 public:
  enum class Mode { kNone, kLandmark, kAll };

  // "none", "landmark" or "all"; anything else is kInvalidArgument naming the choices.
  static Result<Mode> ParseMode(std::string_view text);

  static constexpr uint64_t kMaxLandmarkRequestBytes = 128 << 20;
  static constexpr uint64_t kAllRequestBytes = 4 << 20;
  static constexpr int kAllRequestsInFlight = 2;

  struct Stats {
    uint64_t requests_started = 0;  // FetchUnits calls made
    uint64_t units_wanted = 0;      // units handed to them (present ones cost nothing)
    uint64_t failures = 0;          // FetchUnits calls that returned an error
    bool done = false;              // all work has ended (or there was none)
  };

  Prefetcher(std::shared_ptr<const ImageLayers> layers, cache::Cache* cache, BlobSource* source,
             Mode mode = Mode::kLandmark);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // Starts the background work. Calls after the first do nothing.
  void Start();

  // Blocks until the background work has ended; the first error it met, OK when none (or
  // when Start was never called).
  Status Wait();

  Stats stats() const;

 private:
  void Run();
  void FetchLandmark(uint32_t layer);
  void FetchEverything();
  // One FetchUnits call on `units` of `layer`; records its outcome.
  void Fetch(uint32_t layer, const std::vector<uint32_t>& units, uint64_t max_request_bytes);
  // Keeps `s` as Wait's answer unless an earlier error is there.
  void RecordFailure(const Status& s) EXCLUDES(mu_);
  bool stopping() const { return stop_.load(std::memory_order_relaxed); }

  // Constant after construction.
  const std::shared_ptr<const ImageLayers> layers_;
  cache::Cache* const cache_;
  BlobSource* const source_;
  const Mode mode_;

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> requests_started_{0};
  std::atomic<uint64_t> units_wanted_{0};
  std::atomic<uint64_t> failures_{0};

  // State below is protected by mu_.
  mutable Mutex mu_;
  CondVar done_cv_{&mu_};  // signalled when done_ becomes true
  bool started_ GUARDED_BY(mu_) = false;
  bool done_ GUARDED_BY(mu_) = false;
  Status first_error_ GUARDED_BY(mu_);

  // Set once by Start (under mu_), joined by the destructor.
  std::thread thread_;  // the controller; joined by the destructor
};

}  // namespace imgfs::fs
