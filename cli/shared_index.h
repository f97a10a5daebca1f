// Layer indexes shared through the registry (docs/index-format.md; the trust model is in
// docs/architecture.md, "Shared indexes and whom they are trusted from").
//
// Publishing: PushSharedIndexes puts the shared form (fs/layer/shared_index.h) of every gzip/tar
// layer index the cache holds for an image into the image's repository, as one OCI 1.1
// artifact manifest whose subject is the image manifest, and adds it to the referrers tag
// schema's index when the registry has no referrers API. ConvertImage also pushes an image
// index holding the image manifest and that artifact, so that the index's digest binds both.
//
// Finding (a mount): FindSharedIndexes, for the layers whose index the cache does not hold,
// first in the image index the image was resolved through (bound: as trusted as the image),
// then through referrers when the image's registry or repository is listed in
// `trust_from` (borrowed: fs/tree/image_layers.h checks every file's tar header and, after
// `--prefetch all`, the whole blob). An index that does not decode or does not describe its
// layer is skipped with a warning; the layer then gets today's full pass. Nothing found is
// never an error: failures to ask the registry are logged and leave the layers to the pass.
// Shared indexes are never written to the cache's `layers` (a later mount without trust must
// not use them); their blobs are kept as cache documents, addressed and re-verified by digest.
//
// Thread-safety: free functions; the client and cache are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"
#include "registry/client.h"
#include "registry/resolve.h"

namespace imgfs::cli {

// Whether `trust_from` (entries "REGISTRY" or "REGISTRY/REPO"; a repository entry also covers
// the repositories below it) lists the registry or repository of `ref`.
bool TrustsIndexesFrom(const std::vector<std::string>& trust_from, const registry::Reference& ref);

struct PushedIndexes {
  registry::Descriptor artifact;  // the artifact manifest
  size_t layers = 0;              // indexes in it
  bool tag_schema = false;        // the referrers tag index was updated
};

// Publishes the shared indexes of `image`'s layers held by `cache` (see above). kNotFound when
// the cache holds none of them ("mount or pull it first").
Result<PushedIndexes> PushSharedIndexes(registry::Client& client,
                                        const registry::ResolvedImage& image, cache::Cache& cache);

// PushSharedIndexes, then an OCI image index of the image manifest (with its platform) and the
// artifact manifest, tagged `new_tag` in the image's repository. Returns the index's digest.
Result<std::string> ConvertImage(registry::Client& client, const registry::ResolvedImage& image,
                                 cache::Cache& cache, const std::string& new_tag);

struct FoundIndexes {
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers;  // per layer; null = none found
  std::vector<bool> borrowed;                                 // per layer: found by referrers
  std::string artifact;  // the artifact manifest's digest, "" when none was used
};

// See above. `layers` and `borrowed` always have one entry per image layer. `cached`, when
// given (one entry per layer, cli/layer_indexing.h's LoadCachedLayers), names the layers whose
// index is already loaded from the cache: they are not read from the cache again.
FoundIndexes FindSharedIndexes(
    registry::Client& client, const registry::ResolvedImage& image, cache::Cache& cache,
    const std::vector<std::string>& trust_from,
    const std::vector<std::shared_ptr<const fs::LayerIndex>>* cached = nullptr);

}  // namespace imgfs::cli
