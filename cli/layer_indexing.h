// IndexLayers: every layer of an image indexed (fs::GetOrBuildLayerIndex), several layers at
// once, before a tree can be built over them.
//
// A layer indexed before is read from the cache; otherwise its blob (gzip/tar) or its TOC
// (eStargz, zstd:chunked) is fetched through `source` and verified by the cache. Fails with
// the first layer's error in manifest order, prefixed with that layer's digest; the layers
// that did succeed stay cached.
//
// Thread-safety: a free function; it runs up to kMaxParallelLayers threads of its own and
// joins them before returning. `cache` and `source` must be thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "base/status.h"
#include "cache/blob_source.h"
#include "cache/cache.h"
#include "fs/layer/layer_builder.h"
#include "registry/manifest.h"

namespace imgfs::cli {

inline constexpr int kMaxParallelLayers = 4;

fs::LayerDescriptor ToLayerDescriptor(const registry::Descriptor& d);

// The layers' indexes in manifest order (bottom first).
Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, cache::Cache* cache, cache::BlobSource* source);

}  // namespace imgfs::cli
