// The statistics of a live mount: what it fetched from the registry and what the cache holds,
// per layer. The mount process builds them (MountStatsJson) and serves them as the value of
// fs::kStatsXattr on its root; `imgfs stats` (RunStats, commands.h) reads and prints them.
// Both sides of that JSON live in stats.cc.
//
// Thread-safety: MountStatsJson reads only thread-safe objects and may run while the mount
// serves reads.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cache/cache.h"
#include "cli/registry_blob_source.h"
#include "fs/layer/layer_builder.h"
#include "fs/tree/content_reader.h"
#include "registry/resolve.h"

namespace imgfs::cli {

nlohmann::json MountStatsJson(const registry::ResolvedImage& image,
                              const std::vector<std::shared_ptr<const fs::LayerIndex>>& layers,
                              cache::Cache* cache, const MeteredBlobSource& source,
                              const fs::ContentReader& reader);

}  // namespace imgfs::cli
