// The shared form of a gzip/tar layer's index: what `imgfs index push` publishes in a registry
// so that other hosts mount the layer lazily without their own pass over the blob
// (docs/index-format.md has the byte layout, the limits and the trust model's part here).
//
// EncodeSharedIndex writes a versioned, zstd-compressed blob carrying the layer's digest, its
// diff_id and the LayerIndex body (entries, zran checkpoints with their windows, and each
// unit's sha256: the span digests every fetched range is verified against).
// DecodeSharedIndex reads one from anyone: every count and size is bounded before anything is
// allocated, and the index must describe exactly the layer it is used for (digest, size,
// diff_id, a streamed format). Errors are kCorrupt naming the limit or the field.
//
// What a decoded index does NOT prove: that its entries and windows match the blob. Its unit
// digests make every fetched range the registry's bytes; whether the decoded bytes are the
// file's is checked by the reader where the index is not bound to the image (fs/tree/
// image_layers.h, "borrowed" layers).
//
// Thread-safety: functions of values only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// The media type of one shared index blob, and the artifactType of the manifest holding them.
inline constexpr std::string_view kSharedIndexMediaType =
    "application/vnd.imgfs.layer-index.v1+zstd";
inline constexpr std::string_view kSharedIndexArtifactType = "application/vnd.imgfs.layer-index.v1";
// The annotation of a shared index blob's descriptor naming the layer it indexes.
inline constexpr std::string_view kSharedIndexLayerAnnotation = "io.imgfs.layer.digest";

// Limits on a shared index (docs/index-format.md).
inline constexpr uint64_t kMaxSharedIndexBytes = uint64_t{256} << 20;    // the blob
inline constexpr uint64_t kMaxSharedIndexBodyBytes = uint64_t{1} << 30;  // decompressed
inline constexpr uint64_t kMaxSharedIndexEntries = uint64_t{4} << 20;    // as kMaxTocEntries
inline constexpr uint64_t kMaxSharedIndexUnits = uint64_t{1} << 20;

// The shared blob of `index`. REQUIRES: index.format is "gzip" or "tar" and index.diff_id is
// set (an index of this host's own pass always is).
Result<std::string> EncodeSharedIndex(const LayerIndex& index);

// The index in `bytes`, which must be the shared index of `layer`: same blob digest and size,
// and, when layer.diff_id is set, the same diff_id.
Result<LayerIndex> DecodeSharedIndex(std::string_view bytes, const LayerDescriptor& layer);

}  // namespace imgfs::fs
