// The diff_id check of a TOC layer (eStargz, zstd:chunked) once all of it is in the cache.
//
// A plain gzip/tar layer is streamed whole when it is indexed, and that pass checks its
// uncompressed stream against the image config's diff_id (fs/layer/stream_index.h). A TOC
// layer is fetched unit by unit and may never be whole. When it is (`mount --prefetch all`
// has fetched every unit, `imgfs pull` always does), CheckLayerDiffId puts the blob together
// in order, from the cache's verified units and, for the bytes no unit covers (tar headers
// before the first chunk, the TOC, the footer: a small part of the blob), from the source;
// hashes it (it must be the manifest's blob digest) and its decoded stream (fs/layer/diff_id.h),
// and compares that with the config's diff_id.
//
// The verdict is kept twice: the computed diff_id goes into the layer's cached index
// (LayerIndex::diff_id), so every later use of the layer compares it without fetching
// anything (fs/layer/layer_builder.h); and a mismatch marks the layer failed in `layers`
// (ImageLayers::FailLayer), so the running mount serves nothing more of it. The cached units
// stay: they hash to the blob's digest, they are the registry's blob; what is wrong is the
// image that names this blob with another diff_id.
//
// A borrowed layer (a gzip/tar index found through referrers, fs/tree/image_layers.h) is checked
// the same way once whole, whatever its index claims as diff_id; a blob that does not hash to
// its digest then fails the layer too (every span matched the index, so the index lies), and
// nothing is recorded in the cache.
//
// Thread-safety: safe from any thread; reads through the cache and the source, which are.
#pragma once

#include <cstdint>
#include <string>

#include "base/blob_source.h"
#include "base/status.h"
#include "cache/cache.h"
#include "fs/tree/image_layers.h"

namespace imgfs::fs {

// Whether `index` is a TOC layer whose diff_id is known from the config (`diff_id`) and has
// not been hashed yet (the index records none).
bool DiffIdUnchecked(const LayerIndex& index, const std::string& diff_id);

// DiffIdUnchecked for layer `layer` of `layers`, and not checked through `layers` yet.
bool NeedsDiffIdCheck(const ImageLayers& layers, uint32_t layer);

// Whether every unit of layer `layer` is published in `cache` (the index lookup only).
bool AllUnitsPresent(const ImageLayers& layers, uint32_t layer, cache::Cache* cache);

// The check described above for layer `layer`; OK without doing anything when
// NeedsDiffIdCheck is false. Errors: kDigestMismatch naming the layer and both digests when
// the decoded stream differs from the diff_id, kCorrupt when the blob does not decode (both
// recorded with FailLayer); kDigestMismatch when the bytes put together are not the blob
// (nothing recorded: a transfer fault, the check runs again next time); the source's and the
// cache's errors. REQUIRES: cache and source non-null.
Status CheckLayerDiffId(const ImageLayers& layers, uint32_t layer, cache::Cache* cache,
                        BlobSource* source);

}  // namespace imgfs::fs
