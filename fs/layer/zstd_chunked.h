// zstd:chunked layers: the LayerIndex of a layer read from its table of contents alone.
//
// A zstd:chunked blob is a zstd-compressed tar in which every file's content (and every
// chunk of it) starts a new zstd frame; the TOC ("manifest") is zstd-compressed JSON in a
// skippable frame near the end, followed by the tar-split skippable frame and a footer frame:
//
//   [frames...][skippable: TOC][skippable: tar-split][skippable: footer]
//
// Where the TOC is: the layer annotation `io.github.containers.zstd-chunked.manifest-position`
// (older: `io.containers.zstd-chunked.manifest-position`) = "offset:length:ulength:type",
// type 1; without it, the footer (64-byte containers/storage footer or 40-byte footer of
// older writers, little-endian offset, length, ulength, type, then the magic "GNUlInUx").
// Trust: the compressed TOC bytes must hash to the `...manifest-checksum` annotation (sha256 of
// the compressed bytes, as containers/storage computes it); mismatch -> kDigestMismatch.
//
// The TOC schema is the stargz one (see toc.h) with containers/storage additions:
// `endOffset` (end of a file's last frame), `chunkType` ("zeros" chunks become
// Chunk::kZeroUnit holes, served without a fetch), single-chunk files verified by `digest`.
// Two producers exist: containers/storage (each chunk frame holds exactly the chunk) and
// stargz-snapshotter's ctr-remote (estargz layout in zstd: a chunk frame also holds the tar
// headers that follow, and `innerOffset` may place several files in one frame). Both give
// kZstdFrame units: decode from coff until ulen bytes are out, ignore the rest. The TOC becomes
// an index as fs/layer/toc.h describes (units verified by the digests of their decoded chunks).
//
// Thread-safety: pure functions; safe from many threads (the BlobSource must be, too).
// Failure: as estargz.h (kCorrupt for malformed input or a limit of toc.h crossed,
// kDigestMismatch for the TOC).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/blob_source.h"
#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

inline constexpr std::string_view kZstdChunkedChecksumAnnotation =
    "io.github.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kZstdChunkedPositionAnnotation =
    "io.github.containers.zstd-chunked.manifest-position";
inline constexpr std::string_view kZstdChunkedLegacyChecksumAnnotation =
    "io.containers.zstd-chunked.manifest-checksum";
inline constexpr std::string_view kZstdChunkedLegacyPositionAnnotation =
    "io.containers.zstd-chunked.manifest-position";

// Where the compressed TOC is.
struct ZstdChunkedTocPosition {
  uint64_t offset = 0;  // of the compressed TOC (after the skippable frame header)
  uint64_t length = 0;  // compressed
  uint64_t uncompressed_length = 0;
};

// True when `layer` carries a zstd:chunked checksum annotation (new or old name).
bool IsZstdChunkedLayer(const LayerDescriptor& layer);

// The index of zstd:chunked layer `layer`, from its TOC fetched through `source`.
// REQUIRES: IsZstdChunkedLayer(layer) (else kInvalidArgument); layer.size is the blob's size.
Result<LayerIndex> BuildZstdChunkedIndex(const LayerDescriptor& layer, BlobSource* source);

// --- The parsers BuildZstdChunkedIndex is made of: bytes in, values out. ---

// "offset:length:ulength:type" (type must be 1).
Result<ZstdChunkedTocPosition> ParseZstdChunkedPosition(std::string_view annotation);

// The TOC position from the end of the blob (`tail`: its last bytes, at least 48).
Result<ZstdChunkedTocPosition> ParseZstdChunkedFooter(std::string_view tail);

// The TOC JSON from the compressed TOC (one or more zstd frames). `uncompressed_length` is what
// the position says (0: unknown); more than that, or than kMaxTocJsonBytes (toc.h), is kCorrupt,
// as is a known length that the frames do not fill.
Result<std::string> DecompressZstdChunkedToc(std::string_view compressed,
                                             uint64_t uncompressed_length);

}  // namespace imgfs::fs
