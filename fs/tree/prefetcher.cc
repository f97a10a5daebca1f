#include "fs/tree/prefetcher.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>

#include "base/log.h"
#include "fs/tree/layer_check.h"

namespace imgfs::fs {
namespace {

// How long the background pass sleeps while the mount's reads fill the fetch threads.
constexpr auto kYieldPause = std::chrono::milliseconds(20);

}  // namespace

Result<Prefetcher::Mode> Prefetcher::ParseMode(std::string_view text) {
  if (text == "none") return Mode::kNone;
  if (text == "landmark") return Mode::kLandmark;
  if (text == "all") return Mode::kAll;
  return Status::InvalidArgument("unknown prefetch mode \"" + std::string(text) +
                                 "\": use landmark, all or none");
}

Prefetcher::Prefetcher(std::shared_ptr<const ImageLayers> layers, cache::Cache* cache,
                       BlobSource* source, Mode mode)
    : layers_(std::move(layers)), cache_(cache), source_(source), mode_(mode) {}

Prefetcher::~Prefetcher() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Prefetcher::Start() {
  MutexLock lock(&mu_);
  if (started_) return;
  started_ = true;
  if (mode_ == Mode::kNone || cache_ == nullptr || source_ == nullptr) {
    done_ = true;
    return;
  }
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    IMGFS_LOG(kWarning, "prefetch disabled: cannot start its thread: " << e.what());
    done_ = true;
  }
}

Status Prefetcher::Wait() {
  MutexLock lock(&mu_);
  if (!started_) return Status::Ok();
  while (!done_) done_cv_.Wait();
  return first_error_;
}

Prefetcher::Stats Prefetcher::stats() const {
  Stats s;
  s.requests_started = requests_started_.load();
  s.units_wanted = units_wanted_.load();
  s.failures = failures_.load();
  MutexLock lock(&mu_);
  s.done = done_ || !started_;
  return s;
}

void Prefetcher::Run() {
  std::vector<uint32_t> landmarks;
  for (uint32_t l = 0; l < layers_->size(); ++l) {
    if (layers_->layer(l) && layers_->layer(l)->prefetch_end > 0) landmarks.push_back(l);
  }
  // Landmark regions are what a container reads first: all layers at once.
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; !stopping() && (i = next.fetch_add(1)) < landmarks.size();) {
      try {
        FetchLandmark(landmarks[i]);
      } catch (const std::exception& e) {  // a thread's top: nothing may end the process
        IMGFS_LOG(kWarning, "prefetch of a layer failed unexpectedly: " << e.what());
      }
    }
  };
  std::vector<std::thread> helpers;
  size_t want = std::min<size_t>(cache::kFetchParallelism, landmarks.size());
  for (size_t i = 1; i < want; ++i) {
    try {
      helpers.emplace_back(worker);
    } catch (const std::system_error&) {
      break;  // the controller does the rest itself
    }
  }
  worker();
  for (std::thread& t : helpers) t.join();

  if (mode_ == Mode::kAll) {
    try {
      FetchEverything();
    } catch (const std::exception& e) {
      IMGFS_LOG(kWarning, "prefetch failed unexpectedly: " << e.what());
    }
  }

  {
    MutexLock lock(&mu_);
    done_ = true;
  }
  done_cv_.SignalAll();
  IMGFS_LOG(kInfo, "prefetch finished: " << requests_started_.load() << " fetches of "
                                         << units_wanted_.load() << " units, " << failures_.load()
                                         << " failed");
}

void Prefetcher::FetchLandmark(uint32_t layer) {
  const LayerIndex& index = *layers_->layer(layer);
  std::vector<uint32_t> units;
  uint64_t begin = UINT64_MAX, end = 0;
  for (uint32_t u = 0; u < index.units.size(); ++u) {
    const Unit& unit = index.units[u];
    if (unit.coff >= index.prefetch_end || unit.clen == 0) continue;
    units.push_back(u);
    begin = std::min(begin, unit.coff);
    end = std::max(end, unit.coff + unit.clen);
  }
  if (units.empty()) return;
  // The last unit of the region may reach past prefetch_end: size the request by the units.
  Fetch(layer, units, std::min(kMaxLandmarkRequestBytes, end - begin));
}

void Prefetcher::FetchEverything() {
  for (uint32_t l = 0; l < layers_->size() && !stopping(); ++l) {
    if (!layers_->layer(l)) continue;
    const LayerIndex& index = *layers_->layer(l);
    const std::vector<uint32_t> order = UnitsInBlobOrder(index);
    size_t i = 0;
    while (i < order.size() && !stopping()) {
      // A wave: missing units worth kAllRequestsInFlight requests of about kAllRequestBytes,
      // fetched side by side (FetchUnits cuts it into requests and fans them out), so the
      // link stays busy while one request's round trip or verification is under way.
      std::vector<uint32_t> wave;
      uint64_t bytes = 0;  // of the wave's last request
      int requests = 0;
      for (; i < order.size() && !stopping(); ++i) {
        const Unit& u = index.units[order[i]];
        if (cache_->HasUnit(index.blob_digest, u.coff, u.clen)) continue;
        if (requests == 0 || bytes + u.clen > kAllRequestBytes) {
          if (requests == kAllRequestsInFlight) break;
          ++requests;
          bytes = 0;
        }
        wave.push_back(order[i]);
        bytes += u.clen;
      }
      if (wave.empty()) break;
      // Low priority: while the mount's own reads fill the fetch threads, they go first.
      while (!stopping() && cache_->FetchesInFlight() >= cache::kFetchParallelism) {
        std::this_thread::sleep_for(kYieldPause);
      }
      if (stopping()) break;
      Fetch(l, wave, kAllRequestBytes);
    }
    // A TOC layer that is whole now is checked against its diff_id, once.
    if (!stopping() && NeedsDiffIdCheck(*layers_, l) && AllUnitsPresent(*layers_, l, cache_)) {
      Status s = CheckLayerDiffId(*layers_, l, cache_, source_);
      if (!s.ok()) RecordFailure(s);
    }
  }
}

void Prefetcher::Fetch(uint32_t layer, const std::vector<uint32_t>& units,
                       uint64_t max_request_bytes) {
  const LayerIndex& index = *layers_->layer(layer);
  std::vector<cache::UnitRef> refs;
  refs.reserve(units.size());
  for (uint32_t unit : units) refs.push_back(layers_->MakeUnitRef(layer, unit));
  requests_started_.fetch_add(1);
  units_wanted_.fetch_add(refs.size());
  Status s = cache_->FetchUnits(refs, source_, max_request_bytes);
  if (s.ok()) return;
  failures_.fetch_add(1);
  s = s.WithContext("prefetching layer " + index.blob_digest);
  IMGFS_LOG(kWarning, s.ToString());
  RecordFailure(s);
}

void Prefetcher::RecordFailure(const Status& s) {
  MutexLock lock(&mu_);
  if (first_error_.ok()) first_error_ = s;
}

}  // namespace imgfs::fs
