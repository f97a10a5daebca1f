#include "fs/layer/layer_builder.h"

#include <future>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "base/digest.h"
#include "base/log.h"
#include "fs/layer/stream_index.h"

// The TOC readers live in their own files; until they are part of the build, layers that carry
// their annotations fall back to what the design allows without them (see BuildLayerIndex).
#if __has_include("fs/layer/estargz.h")
#include "fs/layer/estargz.h"
#define IMGFS_HAVE_ESTARGZ 1
#else
#define IMGFS_HAVE_ESTARGZ 0
#endif
#if __has_include("fs/layer/zstd_chunked.h")
#include "fs/layer/zstd_chunked.h"
#define IMGFS_HAVE_ZSTD_CHUNKED 1
#else
#define IMGFS_HAVE_ZSTD_CHUNKED 0
#endif

namespace imgfs::fs {
namespace {

constexpr const char* kEstargzTocAnnotation = "containerd.io/snapshot/stargz/toc.digest";
constexpr const char* kZstdChunkedAnnotation =
    "io.github.containers.zstd-chunked.manifest-checksum";

// Media types the streaming pass reads. The blob's magic decides gzip vs tar vs zstd.
const std::set<std::string, std::less<>>& StreamableMediaTypes() {
  static const auto* types = new std::set<std::string, std::less<>>{
      "",  // unknown: trust the magic
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  };
  return *types;
}

Result<LayerIndex> LoadCached(const LayerDescriptor& layer, cache::Cache* cache) {
  Result<std::string> bytes = cache->GetLayerIndex(layer.digest);
  if (!bytes.ok()) return bytes.status();
  Result<LayerIndex> index = LayerIndex::Deserialize(*bytes);
  if (!index.ok()) {
    IMGFS_LOG(kWarning, "cached index of layer " << layer.digest << " is unusable ("
                                                 << index.status().message() << "); rebuilding");
    return Status::NotFound("cached index is corrupt");
  }
  if (index->blob_digest != layer.digest) {
    IMGFS_LOG(kWarning, "cached index of layer " << layer.digest << " describes "
                                                 << index->blob_digest << "; rebuilding");
    return Status::NotFound("cached index describes another blob");
  }
  return index;
}

// Stores an index built from a TOC (the streamed pass stores its own after committing the blob).
Result<LayerIndex> StoreTocIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                 Result<LayerIndex> built) {
  if (!built.ok()) return built;
  if (Status s = ValidateLayerIndex(*built); !s.ok()) {
    return Status::Internal("index built for layer " + layer.digest +
                            " is inconsistent: " + s.message());
  }
  if (Status s = cache->PutLayerIndex(layer.digest, built->Serialize()); !s.ok()) {
    IMGFS_LOG(kWarning, "could not store the index of layer " << layer.digest << ": "
                                                               << s.ToString());
  }
  return built;
}

Result<LayerIndex> BuildLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                   cache::BlobSource* source) {
  // Another process may have finished the same layer while this one waited.
  if (Result<LayerIndex> cached = LoadCached(layer, cache); cached.ok()) return cached;

  if (layer.annotations.count(kEstargzTocAnnotation)) {
#if IMGFS_HAVE_ESTARGZ
    return StoreTocIndex(layer, cache, BuildEstargzIndex(layer, source));
#else
    // eStargz is valid gzip: the full pass reads it correctly, only more slowly.
    IMGFS_LOG(kInfo, "layer " << layer.digest << " is eStargz; indexing it as plain gzip");
#endif
  } else if (layer.annotations.count(kZstdChunkedAnnotation)) {
#if IMGFS_HAVE_ZSTD_CHUNKED
    return StoreTocIndex(layer, cache, BuildZstdChunkedIndex(layer, source));
#else
    return Status::Unsupported("layer " + layer.digest +
                               " is zstd:chunked, which this build cannot read yet");
#endif
  }
  if (!StreamableMediaTypes().count(layer.media_type)) {
    return Status::Unsupported("layer " + layer.digest + " has media type '" + layer.media_type +
                               "', which imgfs cannot read");
  }
  return BuildStreamedLayerIndex(layer, cache, source);
}

struct InFlight {
  std::mutex mu;
  std::map<std::pair<cache::Cache*, std::string>, std::shared_future<Result<LayerIndex>>>
      builds;  // GUARDED_BY(mu)
};

InFlight& Builds() {
  static auto* in_flight = new InFlight;
  return *in_flight;
}

}  // namespace

Result<LayerIndex> GetOrBuildLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                        cache::BlobSource* source) {
  if (cache == nullptr) return Status::Internal("GetOrBuildLayerIndex without a cache");
  IMGFS_RETURN_IF_ERROR(ValidateDigest(layer.digest).WithContext("layer descriptor"));
  if (Result<LayerIndex> cached = LoadCached(layer, cache); cached.ok()) return cached;
  if (source == nullptr) {
    return Status::Unavailable("layer " + layer.digest +
                               " is not in the cache and the registry is not reachable "
                               "(offline)");
  }

  // Concurrent requests for one layer share one build.
  InFlight& in_flight = Builds();
  auto key = std::make_pair(cache, layer.digest);
  std::promise<Result<LayerIndex>> promise;
  {
    std::unique_lock lock(in_flight.mu);
    auto it = in_flight.builds.find(key);
    if (it != in_flight.builds.end()) {
      std::shared_future<Result<LayerIndex>> pending = it->second;
      lock.unlock();
      return pending.get();
    }
    in_flight.builds.emplace(key, promise.get_future().share());
  }
  Result<LayerIndex> result = BuildLayerIndex(layer, cache, source);
  promise.set_value(result);
  {
    std::lock_guard lock(in_flight.mu);
    in_flight.builds.erase(key);
  }
  return result;
}

}  // namespace imgfs::fs
