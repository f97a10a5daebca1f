// TOC-described layers (eStargz, zstd:chunked): the conversion of their table of contents into
// a LayerIndex, which both formats share, and the checks of their units.
//
// Both formats describe a layer with the stargz.index.json schema: {"version": 1, "entries":
// [...]}, one entry per tar member ("reg", "dir", "symlink", "hardlink", "char", "block",
// "fifo") plus "chunk" entries that continue the regular file before them. containers/storage
// adds `endOffset` (end of a file's last frame), `chunkType` ("zeros": a hole, served without
// a fetch) and `digest` (verifies a single-chunk file).
//
// Units. Every distinct chunk `offset` is one unit of the given codec: coff = offset, clen runs
// to the next offset the TOC records (or the TOC's own start), ulen = the largest innerOffset +
// chunkSize of the chunks in it. Decoding a unit means "decode from coff, across member or
// frame ends, until ulen bytes are out, ignore the rest". Unit::sha256 stays EMPTY: a TOC gives
// digests of the *decoded* chunk bytes (chunkDigest), not of compressed ranges. Each chunk
// carries its digest in Chunk::sha256; UnitChecks gathers them per unit and VerifyDecodedUnit
// checks a decoded unit against them. A unit must not be stored or served before that check
// passes (cache::UnitRef::verify).
//
// Entries: TOC order, cleaned paths (CleanPath), whiteouts applied (ApplyWhiteoutName). The
// eStargz landmark files ".prefetch.landmark" / ".no.prefetch.landmark" are not part of the
// image and are left out; the prefetch landmark's offset becomes LayerIndex::prefetch_end.
//
// Parsing streams over the JSON (no document tree is built) and enforces the limits below as it
// goes: a TOC over a limit fails when the limit is crossed, having used memory in proportion to
// what it read so far, never to what it claims.
//
// Thread-safety: pure functions. Failure: malformed JSON or schema, offsets outside the data,
// overlapping or inconsistent chunks, a limit crossed -> kCorrupt (kUnsupported for a TOC
// version or chunk type imgfs does not know, or a chunk larger than a unit may be). Never a
// crash, and no allocation is sized by an outside number without a bound.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// Limits on a TOC (outside data; docs/architecture.md, "Limits on outside data"). Names and
// xattrs are held to the limits of layer_index.h, as in every layer format.
inline constexpr uint64_t kMaxTocCompressedBytes = uint64_t{128} << 20;
inline constexpr uint64_t kMaxTocJsonBytes = uint64_t{384} << 20;
inline constexpr size_t kMaxTocEntries = size_t{4} << 20;  // TOC entries of all types
inline constexpr size_t kMaxTocNesting = 32;               // JSON arrays/objects deep

// The limits a parse enforces; tests lower them.
struct TocLimits {
  size_t max_entries = kMaxTocEntries;
  size_t max_xattrs_per_entry = kMaxXattrsPerEntry;
};

// Where a TOC's units are: the blob, the codec of its units, and where its data ends (the
// TOC's own start: no unit may reach past it).
struct TocBlob {
  std::string digest;  // "sha256:<hex>" of the blob
  uint64_t size = 0;
  UnitCodec codec = UnitCodec::kGzipMember;  // kGzipMember (eStargz) or kZstdFrame
  uint64_t data_end = 0;
  std::string format;  // LayerIndex::format: "estargz", "zstd:chunked"
};

// The index described by TOC JSON `toc_json`. The caller has checked the TOC's digest.
Result<LayerIndex> IndexFromTocJson(std::string_view toc_json, const TocBlob& blob,
                                    const TocLimits& limits = {});

// One digest that a decoded unit must satisfy: bytes [unit_offset, unit_offset + length) of
// the unit's decoded output hash to sha256 ("sha256:<hex>").
struct ChunkCheck {
  uint64_t unit_offset = 0;
  uint64_t length = 0;
  std::string sha256;
};

// Per unit of `index`, the chunk digests that the unit's decoded output must satisfy (sorted by
// unit_offset, duplicates dropped), for units with an empty Unit::sha256; empty lists for the
// others. A chunk of such a unit without a digest yields a check that never passes: no byte of
// the unit is served unverified (ValidateLayerIndex refuses such an index anyway).
std::vector<std::vector<ChunkCheck>> UnitChecks(const LayerIndex& index);

// Checks `decoded` (a unit's decoded output) against its chunk digests. kDigestMismatch when
// one does not match, kCorrupt when `decoded` is too short for a chunk.
Status VerifyDecodedUnit(const std::vector<ChunkCheck>& checks, std::string_view decoded);

// Decodes `compressed` (the clen bytes of `unit`) and checks the result against `checks`
// (kCorrupt when there are none: a unit without a sha256 needs chunk digests).
Result<std::string> DecodeAndVerifyUnit(const Unit& unit, const std::vector<ChunkCheck>& checks,
                                        std::string_view compressed);

// Parses an RFC 3339 time ("2006-01-02T15:04:05Z", fractions and offsets allowed).
Result<std::pair<int64_t, uint32_t>> ParseRfc3339(std::string_view text);

}  // namespace imgfs::fs
