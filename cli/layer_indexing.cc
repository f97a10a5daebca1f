#include "cli/layer_indexing.h"

#include <algorithm>
#include <atomic>
#include <thread>

namespace imgfs::cli {

fs::LayerDescriptor ToLayerDescriptor(const registry::Descriptor& d) {
  fs::LayerDescriptor out;
  out.media_type = d.media_type;
  out.digest = d.digest;
  out.size = d.size;
  out.annotations = d.annotations;
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

Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, cache::Cache* cache, cache::BlobSource* source) {
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers(manifest.layers.size());
  IMGFS_RETURN_IF_ERROR(
      ForEachInParallel(layers.size(), kMaxParallelLayers, [&](size_t i) -> Status {
        const registry::Descriptor& d = manifest.layers[i];
        auto index = fs::GetOrBuildLayerIndex(ToLayerDescriptor(d), cache, source);
        if (!index.ok()) return index.status().WithContext("layer " + d.digest);
        layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
        return Status::Ok();
      }));
  return layers;
}

}  // namespace imgfs::cli
