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

Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, cache::Cache* cache, cache::BlobSource* source) {
  const size_t n = manifest.layers.size();
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers(n);
  std::vector<Status> errors(n);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) {
      auto index = fs::GetOrBuildLayerIndex(ToLayerDescriptor(manifest.layers[i]), cache, source);
      if (index.ok()) {
        layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
      } else {
        errors[i] = index.status().WithContext("layer " + manifest.layers[i].digest);
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min<size_t>(n, kMaxParallelLayers); ++t) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  for (const Status& s : errors) {
    if (!s.ok()) return s;
  }
  return layers;
}

}  // namespace imgfs::cli
