// eStargz layers: the LayerIndex of a layer read from its table of contents (TOC) alone.
//
// An eStargz blob is a gzip tar made of many gzip members: file contents start a new member
// (per chunk of at most a few MiB; newer writers may put several small files into one member,
// telling where each starts with `innerOffset`), the TOC is the tar entry "stargz.index.json"
// in its own member, and a footer ends the blob:
//
//   [member][member]...[TOC member][footer]
//   footer  = an empty gzip member whose extra field holds "%016xSTARGZ" % toc_offset:
//             51 bytes (subfield 'S','G'), or 47 bytes in legacy stargz (bare extra field).
//
// The index is built from the footer and the TOC only: one range request for the blob's tail
// (sized so that the TOC usually comes with it), one more when the TOC starts earlier. The TOC
// JSON must hash to the layer's `containerd.io/snapshot/stargz/toc.digest` annotation (the
// manifest that carries it is verified), so the index is as trusted as the manifest.
//
// Units. Every distinct chunk `offset` is one kGzipMember unit: coff = offset, clen runs to the
// next distinct offset (or the TOC's offset), ulen = the largest innerOffset + chunkSize of the
// chunks in it. The range may hold more than one gzip member (the tail of the member is tar
// padding and headers of the following entries; parallel writers add header-only members), so
// decoding a unit means "decode from coff, across member ends, until ulen bytes are out, ignore
// the rest". Unit::sha256 is left EMPTY: the TOC gives digests of the *decoded* chunk bytes
// (chunkDigest = sha256 of the chunk's file content), not of the compressed range. Those are
// returned in TocLayerIndex::unit_checks, and VerifyDecodedUnit checks a decoded unit against
// them; a unit must not be stored or served before that check passes.
//
// Entries: TOC order, cleaned paths (CleanPath), whiteouts applied (ApplyWhiteoutName).
// The landmark files ".prefetch.landmark" / ".no.prefetch.landmark" are not part of the
// image and are left out; the prefetch landmark's offset is reported as prefetch_end.
//
// Thread-safety: pure functions; safe from many threads (the BlobSource must be, too).
// Failure: malformed footer/TOC/JSON, offsets outside the blob, overlapping or inconsistent
// chunks, absurd sizes or counts -> kCorrupt; TOC digest mismatch -> kDigestMismatch; errors
// of the BlobSource are passed on with context. Never a crash, and no allocation is sized by
// an outside number without a bound.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cache/blob_source.h"
#include "fs/layer/layer_builder.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

inline constexpr std::string_view kEstargzTocDigestAnnotation =
    "containerd.io/snapshot/stargz/toc.digest";

// One digest that a decoded unit must satisfy: bytes [unit_offset, unit_offset + length) of
// the unit's decoded output hash to sha256 ("sha256:<hex>").
struct ChunkCheck {
  uint64_t unit_offset = 0;
  uint64_t length = 0;
  std::string sha256;
};

// What a TOC says beyond LayerIndex.
struct TocLayerIndex {
  LayerIndex index;
  // unit_checks[u]: the chunk digests that index.units[u]'s decoded bytes must satisfy; every
  // chunk of every entry that points at unit u is listed (sorted by unit_offset).
  std::vector<std::vector<ChunkCheck>> unit_checks;
  // Compressed offset where the prioritized (prefetch) region ends: the offset of the
  // ".prefetch.landmark" entry; 0 when the layer has none or says ".no.prefetch.landmark".
  uint64_t prefetch_end = 0;
};

// The index of eStargz layer `layer`, from its footer and TOC fetched through `source`.
// REQUIRES: layer.annotations holds kEstargzTocDigestAnnotation (else kInvalidArgument:
// such layers must take the full-pass path) and layer.size is the blob's size.
Result<TocLayerIndex> ReadEstargzIndex(const LayerDescriptor& layer, cache::BlobSource* source);

// A layer that also carries a zstd:chunked checksum annotation (stargz-snapshotter writes both
// on its zstd:chunked layers) is read as zstd:chunked.

// ReadEstargzIndex(...).index: the form the layer builder stores.
Result<LayerIndex> BuildEstargzIndex(const LayerDescriptor& layer, cache::BlobSource* source);

// The unit_checks of an index read back from the cache, from Chunk::sha256 (the digest of the
// chunk's decoded bytes, filled by this reader when LayerIndex has that field). kUnsupported
// when LayerIndex has no such field; kCorrupt when a unit without sha256 has no chunk digest.
Result<std::vector<std::vector<ChunkCheck>>> UnitChecksFromIndex(const LayerIndex& index);

// Checks `decoded` (a unit's decoded output) against its chunk digests. kDigestMismatch when
// one does not match, kCorrupt when `decoded` is too short for a chunk.
Status VerifyDecodedUnit(const std::vector<ChunkCheck>& checks, std::string_view decoded);

// --- Lower-level pieces, exposed for zstd:chunked (same TOC schema) and tests. ---

// The TOC offset in a 51-byte eStargz or 47-byte legacy stargz footer. `tail` is the end of
// the blob (at least 47 bytes); *footer_size gets 51 or 47.
Result<uint64_t> ParseEstargzFooter(std::string_view tail, uint64_t* footer_size);

// Turns TOC JSON (the stargz.index.json schema, also used by zstd:chunked) into an index.
// `data_end` is where the TOC starts in the blob: no unit may reach past it. `codec` is the
// codec of the units (kGzipMember or kZstdFrame).
Result<TocLayerIndex> IndexFromTocJson(std::string_view toc_json, const LayerDescriptor& layer,
                                       UnitCodec codec, uint64_t data_end, std::string format);

// Parses an RFC 3339 time ("2006-01-02T15:04:05Z", fractions and offsets allowed).
Result<std::pair<int64_t, uint32_t>> ParseRfc3339(std::string_view text);

}  // namespace imgfs::fs
