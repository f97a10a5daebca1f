#include "cli/cache_usage.h"

#include <algorithm>
#include <map>

#include "cli/common.h"

namespace imgfs::cli {
namespace {

// The layers of the manifest `digest`, or of every cached manifest of the index `digest`.
// Missing or damaged documents add nothing: the cache heals them on the next resolve.
void AddLayers(cache::Cache& cache, const std::string& digest, std::set<std::string>* blobs,
               int depth = 0) {
  auto doc = cache.GetDocument(digest);
  if (!doc.ok()) return;
  auto kind = registry::ClassifyManifest(doc->bytes, doc->media_type);
  if (!kind.ok()) return;
  if (*kind == registry::ManifestKind::kImage) {
    auto manifest = registry::ParseImageManifest(doc->bytes);
    if (!manifest.ok()) return;
    for (const registry::Descriptor& l : manifest->layers) blobs->insert(l.digest);
    return;
  }
  if (depth > 0) return;  // an index of indexes is refused by the resolver too
  auto index = registry::ParseImageIndex(doc->bytes);
  if (!index.ok()) return;
  for (const registry::Descriptor& m : index->manifests) AddLayers(cache, m.digest, blobs, 1);
}

}  // namespace

Result<std::vector<CachedImage>> CachedImages(cache::Cache& cache) {
  IMGFS_ASSIGN_OR_RETURN(auto records, cache.ListReferences(""));
  std::map<std::string, CachedImage> images;
  for (const auto& [key, record] : records) {
    std::string ref = key.rfind(kPulledPrefix, 0) == 0 ? key.substr(kPulledPrefix.size()) : key;
    CachedImage& image = images[record.manifest_digest];
    image.digest = record.manifest_digest;
    if (std::find(image.references.begin(), image.references.end(), ref) ==
        image.references.end()) {
      image.references.push_back(ref);
    }
  }
  std::vector<CachedImage> out;
  for (auto& [digest, image] : images) {
    AddLayers(cache, digest, &image.blobs);
    std::sort(image.references.begin(), image.references.end());
    out.push_back(std::move(image));
  }
  return out;
}

Result<std::set<std::string>> ReferencedBlobs(cache::Cache& cache) {
  IMGFS_ASSIGN_OR_RETURN(std::vector<CachedImage> images, CachedImages(cache));
  std::set<std::string> blobs;
  for (const CachedImage& image : images) blobs.insert(image.blobs.begin(), image.blobs.end());
  return blobs;
}

Result<std::unique_ptr<cache::Cache>> OpenCacheForWriting(const CommonOptions& common) {
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::Cache> cache,
                         cache::Cache::Open(CacheRoot(common)));
  if (common.cache_max_size > 0) cache->SetSizeLimit(common.cache_max_size, ReferencedBlobs);
  return cache;
}

Result<std::unique_ptr<cache::Pin>> PinLayers(cache::Cache& cache,
                                              const std::vector<registry::Descriptor>& layers) {
  std::vector<std::string> digests;
  for (const registry::Descriptor& l : layers) digests.push_back(l.digest);
  return cache.eviction().PinBlobs(digests);
}

}  // namespace imgfs::cli
