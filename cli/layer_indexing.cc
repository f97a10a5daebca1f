#include "cli/layer_indexing.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "base/mutex.h"

namespace imgfs::cli {

fs::LayerDescriptor ToLayerDescriptor(const registry::Descriptor& d, std::string diff_id) {
  fs::LayerDescriptor out;
  out.media_type = d.media_type;
  out.digest = d.digest;
  out.size = d.size;
  out.annotations = d.annotations;
  out.diff_id = std::move(diff_id);
  return out;
}

Status ForEachInParallel(size_t n, size_t max_threads, const std::function<Status(size_t)>& fn) {
  std::vector<Status> errors(n);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) errors[i] = fn(i);
  };
  std::vector<std::thread> threads;
  for (size_t t = 1; t < std::min(n, max_threads); ++t) threads.emplace_back(worker);
  worker();  // this thread is one of the workers
  for (auto& th : threads) th.join();
  for (const Status& s : errors) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::vector<std::shared_ptr<const fs::LayerIndex>> LoadCachedLayers(
    const registry::ImageManifest& manifest, const std::vector<std::string>& diff_ids,
    cache::Cache* cache) {
  const size_t n = manifest.layers.size();
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers(n);
  if (!diff_ids.empty() && diff_ids.size() != n) return layers;  // IndexLayers says why
  (void)ForEachInParallel(n, kMaxParallelLayers, [&](size_t i) -> Status {
    // No source: only the cache is read; whatever fails is left to IndexLayers to report.
    auto index = fs::GetOrBuildLayerIndex(
        ToLayerDescriptor(manifest.layers[i], diff_ids.empty() ? std::string() : diff_ids[i]),
        cache, nullptr);
    if (index.ok()) layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
    return Status::Ok();
  });
  return layers;
}

Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, const std::vector<std::string>& diff_ids,
    cache::Cache* cache, BlobSource* source, std::atomic<bool>* cancel,
    const std::vector<std::shared_ptr<const fs::LayerIndex>>* given) {
  const size_t n = manifest.layers.size();
  if (!diff_ids.empty() && diff_ids.size() != n) {
    return Status::Internal("IndexLayers: " + std::to_string(diff_ids.size()) + " diff_ids for " +
                            std::to_string(n) + " layers");
  }
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers(n);
  // The first failure is the cause: the layers cancelled because of it fail too, and an
  // earlier one of those must not be reported instead.
  Mutex mu;
  Status first_error;  // written under mu; read once the workers are done
  std::atomic<bool> failed{false};
  (void)ForEachInParallel(n, kMaxParallelLayers, [&](size_t i) -> Status {
    if (failed) return Status::Ok();  // not started: the mount fails anyway
    if (given != nullptr && i < given->size() && (*given)[i]) {
      layers[i] = (*given)[i];
      return Status::Ok();
    }
    const registry::Descriptor& d = manifest.layers[i];
    auto index = fs::GetOrBuildLayerIndex(
        ToLayerDescriptor(d, diff_ids.empty() ? std::string() : diff_ids[i]), cache, source);
    if (index.ok()) {
      layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
      return Status::Ok();
    }
    MutexLock lock(&mu);
    if (first_error.ok()) {
      first_error = index.status().WithContext("layer " + d.digest);
      failed = true;
      if (cancel != nullptr) *cancel = true;
    }
    return first_error;
  });
  if (!first_error.ok()) return first_error;
  return layers;
}

}  // namespace imgfs::cli
