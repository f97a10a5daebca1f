#include "fs/layer/layer_builder.h"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "base/digest.h"
#include "base/log.h"
#include "base/single_flight.h"
#include "fs/layer/estargz.h"
#include "fs/layer/stream_index.h"
#include "fs/layer/zstd_chunked.h"

namespace imgfs::fs {
namespace {

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
  if (!bytes.ok()) return Status::NotFound(bytes.status().message());  // built again
  auto record = std::make_shared<const std::string>(std::move(*bytes));
  Result<LayerIndex> index = LayerIndex::Deserialize(record);
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
  if (IsOlderLayerIndexVersion(*record)) {
    // Stored again in the current version, which the next mount loads faster.
    if (Status s = cache->PutLayerIndex(layer.digest, index->Serialize()); !s.ok()) {
      IMGFS_LOG(kWarning, "could not store the index of layer " << layer.digest
                                                                << " again: " << s.ToString());
    }
  }
  if (layer.diff_id.empty()) return index;
  if (!index->diff_id.empty()) {
    // Hashed when the whole stream was decoded (this or an earlier process): the same verdict
    // as then, without the stream.
    if (index->diff_id == layer.diff_id) return index;
    return Status::DigestMismatch("layer " + layer.digest + " uncompresses to " + index->diff_id +
                                  " but the image config's diff_id for it is " + layer.diff_id);
  }
  if (index->format == "gzip" || index->format == "tar") {
    // An index of the streamed formats without a diff_id was stored before imgfs recorded it:
    // the stream is read again, so the check is not skipped.
    return Status::NotFound("cached index of a streamed layer carries no diff_id");
  }
  return index;  // a TOC layer: checked once all of it is fetched (fs/tree/layer_check.h)
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
    IMGFS_LOG(kWarning,
              "could not store the index of layer " << layer.digest << ": " << s.ToString());
  }
  return built;
}

// Zran checkpoints cost a 32 KiB window each; past 128 MiB of blob, spans grow (up to 4 MiB)
// so that the index of a huge layer stays a few tens of MiB at most.
StreamIndexOptions StreamOptionsFor(const LayerDescriptor& layer) {
  StreamIndexOptions options;
  options.span = std::clamp<uint64_t>(layer.size / 128, options.span, uint64_t{4} << 20);
  return options;
}

Result<LayerIndex> BuildLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                   BlobSource* source) {
  // Another process may have finished the same layer while this one waited.
  if (Result<LayerIndex> cached = LoadCached(layer, cache); !cached.status().IsNotFound()) {
    return cached;
  }

  // zstd:chunked first: stargz-snapshotter's zstd:chunked layers carry the eStargz TOC
  // annotation too, but their TOC sits in a zstd skippable frame, not behind a gzip footer.
  if (IsZstdChunkedLayer(layer)) {
    return StoreTocIndex(layer, cache, BuildZstdChunkedIndex(layer, source));
  }
  if (layer.annotations.count(std::string(kEstargzTocDigestAnnotation))) {
    Result<LayerIndex> toc = StoreTocIndex(layer, cache, BuildEstargzIndex(layer, source));
    Code code = toc.status().code();
    if (toc.ok() || (code != Code::kCorrupt && code != Code::kUnsupported)) return toc;
    // An unreadable TOC does not make the layer unreadable: eStargz is a valid gzip tar, and
    // the full pass verifies it against the descriptor's digest. A TOC that does not match its
    // annotation (kDigestMismatch) is not forgiven.
    IMGFS_LOG(kWarning, "layer " << layer.digest << ": cannot use its eStargz TOC ("
                                 << toc.status().message() << "); reading it as plain gzip");
  }
  if (!StreamableMediaTypes().count(layer.media_type)) {
    return Status::Unsupported("layer " + layer.digest + " has media type '" + layer.media_type +
                               "', which imgfs cannot read");
  }
  return BuildStreamedLayerIndex(layer, cache, source, StreamOptionsFor(layer));
}

// Concurrent requests for one layer of one cache root share one build (the layers of an image
// are indexed in parallel, and two mounts in one process may want the same layer). Keyed by
// root and digest, not by Cache object: handles on one root share one store.
SingleFlight<std::string, LayerIndex>& Builds() {
  static auto* builds = new SingleFlight<std::string, LayerIndex>;  // never destroyed
  return *builds;
}

}  // namespace

Result<LayerIndex> GetOrBuildLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                        BlobSource* source) {
  if (cache == nullptr) return Status::Internal("GetOrBuildLayerIndex without a cache");
  IMGFS_RETURN_IF_ERROR(ValidateDigest(layer.digest).WithContext("layer descriptor"));
  if (Result<LayerIndex> cached = LoadCached(layer, cache); !cached.status().IsNotFound()) {
    return cached;
  }
  if (source == nullptr) {
    return Status::Unavailable("layer " + layer.digest +
                               " is not in the cache and the registry is not reachable "
                               "(offline)");
  }

  try {
    return Builds().Do(cache->root() + "\n" + layer.digest,
                       [&] { return BuildLayerIndex(layer, cache, source); });
  } catch (const std::exception& e) {
    // Only allocation failures can get here; the flight has answered its waiters already.
    return Status::Internal("indexing layer " + layer.digest + " failed: " + e.what());
  }
}

}  // namespace imgfs::fs
