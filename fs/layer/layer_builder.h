// Getting the LayerIndex of a layer: from the cache, or by building it once.
//
// The format is chosen from the descriptor: eStargz and zstd:chunked layers whose TOC digest
// is pinned by a verified manifest annotation get their index from the TOC alone (a few range
// requests); everything else (plain gzip, uncompressed tar, eStargz without the annotation)
// gets one streaming pass over the whole blob, which verifies the blob's digest and size,
// keeps the bytes in the store, and only then commits the index (see DESIGN.md, "One index for
// every layer format"). An eStargz layer whose TOC cannot be read (kCorrupt, kUnsupported)
// falls back to the full pass; a TOC that does not match its annotation is an error.
//
// Thread-safety: safe to call for different layers from several threads at once (layers of
// one image are indexed in parallel).
#pragma once

#include "base/blob_source.h"
#include "base/status.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// The verified index of `layer`, from `cache` when present, else built and stored there.
// `source` may be null when offline: an index not in the cache is then kUnavailable.
// When `layer.diff_id` is set, a cached index whose recorded LayerIndex::diff_id differs is
// kDigestMismatch naming the layer (nothing is fetched); a cached gzip/tar index without a
// recorded diff_id is built again, so that its stream is checked.
Result<LayerIndex> GetOrBuildLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                        BlobSource* source);

}  // namespace imgfs::fs
