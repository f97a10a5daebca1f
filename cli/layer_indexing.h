// IndexLayers: every layer of an image indexed (fs::GetOrBuildLayerIndex), several layers at
// once, before a tree can be built over them.
//
// A layer indexed before is read from the cache; otherwise its blob (gzip/tar) or its TOC
// (eStargz, zstd:chunked) is fetched through `source` and verified by the cache; a layer
// streamed whole is also checked against its diff_id from the image config. Fails with the
// first error that happened, prefixed with that layer's digest: no further layer is started,
// and `*cancel` (when given; the registry client's ClientOptions::cancel) is set so that the
// transfers under way stop too. The layers that did succeed stay cached.
//
// Thread-safety: free functions; they work on the calling thread and up to
// kMaxParallelLayers - 1 threads of their own, joined before they return. `cache` and
// `source` must be thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/blob_source.h"
#include "base/status.h"
#include "cache/cache.h"
#include "fs/layer/layer_builder.h"
#include "registry/manifest.h"

namespace imgfs::cli {

inline constexpr int kMaxParallelLayers = 4;

// Calls fn(i) for every i in [0, n), on up to `max_threads` threads at once, lower i first.
// Every i is called whatever the others return; the result is the Status of the lowest i that
// failed, OK when none did.
Status ForEachInParallel(size_t n, size_t max_threads, const std::function<Status(size_t)>& fn);

fs::LayerDescriptor ToLayerDescriptor(const registry::Descriptor& d, std::string diff_id = "");

// The indexes `cache` holds of the manifest's layers, read in parallel, nothing fetched: one
// entry per layer, null where the cache has no usable index (missing, damaged, or one that
// IndexLayers would refuse, which then says why). A warm mount reads each index once, here.
std::vector<std::shared_ptr<const fs::LayerIndex>> LoadCachedLayers(
    const registry::ImageManifest& manifest, const std::vector<std::string>& diff_ids,
    cache::Cache* cache);

// The layers' indexes in manifest order (bottom first). `diff_ids` is empty (nothing checked)
// or has one entry per layer (registry::ResolvedImage::diff_ids). A layer whose entry in
// `given` (when not null: one per layer) is set takes that index as it is (a shared index,
// cli/shared_index.h) and fetches nothing.
Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, const std::vector<std::string>& diff_ids,
    cache::Cache* cache, BlobSource* source, std::atomic<bool>* cancel = nullptr,
    const std::vector<std::shared_ptr<const fs::LayerIndex>>* given = nullptr);

}  // namespace imgfs::cli
