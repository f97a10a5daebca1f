#include "cache/auto_gc.h"

#include <algorithm>

#include "base/log.h"
#include "cache/gc.h"

namespace imgfs::cache {

uint64_t AutoGcStep(uint64_t max_bytes) {
  return std::clamp<uint64_t>(max_bytes / 32, uint64_t{256} << 10, uint64_t{64} << 20);
}

void AutoGc::Configure(uint64_t max_bytes, ReferencedBlobsFn referenced) {
  MutexLock lock(&mu_);
  max_bytes_ = max_bytes;
  step_ = max_bytes == 0 ? 0 : AutoGcStep(max_bytes);
  referenced_ = std::move(referenced);
}

bool AutoGc::NoteWritten(uint64_t bytes) {
  MutexLock lock(&mu_);
  if (max_bytes_ == 0) return false;
  since_pass_ += bytes;
  if (running_ || since_pass_ < step_) return false;
  running_ = true;
  return true;
}

void AutoGc::RunPasses(Cache& cache) {
  for (;;) {
    GcPolicy policy;
    ReferencedBlobsFn referenced_fn;
    {
      MutexLock lock(&mu_);
      if (max_bytes_ == 0) {
        running_ = false;
        return;
      }
      since_pass_ = 0;
      policy.max_bytes = max_bytes_;
      referenced_fn = referenced_;
      ++passes_;
    }
    std::set<std::string> referenced;
    if (referenced_fn) {
      auto r = referenced_fn(cache);
      // Without the set every blob counts as referenced: plain LRU, nothing dropped early.
      if (r.ok()) {
        referenced = std::move(r).value();
      } else {
        IMGFS_LOG(kWarning, "cache gc: which blobs images use: " << r.status().ToString());
      }
    }
    auto report = CollectGarbage(cache, referenced, policy);
    bool warn = false;
    {
      MutexLock lock(&mu_);
      if (report.ok() && report->pinned_bytes > *policy.max_bytes && !warned_pinned_) {
        warn = warned_pinned_ = true;
      }
    }
    if (!report.ok()) {
      IMGFS_LOG(kWarning, "cache gc: " << report.status().ToString());
    } else {
      if (!report->done.empty()) {
        IMGFS_LOG(kInfo, "cache gc: limit " << *policy.max_bytes << " bytes: freed "
                                            << report->freed() << " bytes (" << report->done.size()
                                            << " blobs), " << report->bytes_after << " bytes left");
      }
      if (warn) {
        IMGFS_LOG(kWarning, "cache gc: blobs in use by live mounts take "
                                << report->pinned_bytes << " bytes, above the cache limit of "
                                << *policy.max_bytes << " bytes; the cache stays above it");
      }
    }
    MutexLock lock(&mu_);
    if (since_pass_ < step_ || max_bytes_ == 0) {
      running_ = false;
      return;
    }
  }
}

uint64_t AutoGc::max_bytes() {
  MutexLock lock(&mu_);
  return max_bytes_;
}

uint64_t AutoGc::passes() {
  MutexLock lock(&mu_);
  return passes_;
}

}  // namespace imgfs::cache
