// What the images in the cache use, and the cache as a writing command opens it: with its
// size limit kept automatically and the blobs of its image pinned (docs/cache.md, "Limits
// and gc").
//
// An image of the cache is a manifest (or index) digest that a reference record names: a
// record of `imgfs pull` ("pulled <ref>") or the resolver's record of what a tag named
// (image_resolver.h). Its blobs are the layers of that manifest, or of every manifest of an
// index that is cached. Blobs of no such image (after `imgfs rmi`, or of an old manifest of a
// moved tag) are what gc drops first. An image mounted by digest and never pulled has no
// record: its blobs count as unreferenced.
//
// Free functions; reading the cache only, except OpenCacheForWriting's limit.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"
#include "cache/eviction.h"
#include "cli/commands.h"
#include "registry/manifest.h"

namespace imgfs::cli {

struct CachedImage {
  std::string digest;                   // of the manifest or index the records name
  std::vector<std::string> references;  // the records' references, sorted
  std::set<std::string> blobs;          // its layers' digests
};

// Every image of the cache, by digest. A record whose document is missing or damaged names
// an image without blobs.
Result<std::vector<CachedImage>> CachedImages(cache::Cache& cache);
// The union of CachedImages' blobs (a cache::ReferencedBlobsFn).
Result<std::set<std::string>> ReferencedBlobs(cache::Cache& cache);

// Opens the cache of `common` for a command that writes it: with common.cache_max_size
// (--cache-max-size, $IMGFS_CACHE_MAX_SIZE or the config file, cli/config.h) applied
// automatically (cache::Cache::SetSizeLimit) when there is one.
Result<std::unique_ptr<cache::Cache>> OpenCacheForWriting(const CommonOptions& common);

// Pins the blobs of `layers` for the life of the returned Pin (cache/eviction.h): what a
// mount, pull, ls, cat or cp holds while it works on an image.
Result<std::unique_ptr<cache::Pin>> PinLayers(cache::Cache& cache,
                                              const std::vector<registry::Descriptor>& layers);

}  // namespace imgfs::cli
