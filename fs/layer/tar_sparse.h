// GNU sparse members of a tar stream, read as Go's archive/tar (docker, containerd) reads them.
//
// A sparse member stores only its data regions; the rest of the file reads as zeros. Its map
// (where the data regions lie) comes in one of four forms:
//   old GNU   typeflag 'S': up to 4 (offset, length) pairs in the header, more in extension
//             blocks that follow it (each with 21 pairs and an "is extended" flag);
//   PAX 0.0   repeated GNU.sparse.offset / GNU.sparse.numbytes records;
//   PAX 0.1   GNU.sparse.map = "offset,length,offset,length,...";
//   PAX 1.0   the first blocks of the member's data: decimal numbers, one per line (count,
//             then offset/length pairs), padded to a whole block.
// These helpers parse a map, check it as Go's reader does (regions in order, not overlapping,
// inside the logical size; the stored data exactly as long as the regions) and turn it into
// the file's Chunks.
//
// Limit: kMaxSparseRegions regions per member (docs/architecture.md); more is kCorrupt.
// Thread-safety: plain values and functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

inline constexpr size_t kMaxSparseRegions = 65536;
// The PAX 1.0 map in the data: no more than this many bytes (the regions' numbers).
inline constexpr uint64_t kMaxSparseMapBytes = uint64_t{4} << 20;

struct SparseRegion {
  int64_t offset = 0;
  int64_t length = 0;
};

// Old GNU: `count` entries of 24 bytes (12-byte offset, 12-byte length) at `area`, stopping at
// the first whose offset starts with NUL. Appends to `out`; kCorrupt on a bad number or too
// many regions.
Status ParseOldGnuSparse(const uint8_t* area, size_t count, std::vector<SparseRegion>* out);

// PAX 0.0 / 0.1: GNU.sparse.numblocks and the comma-joined map.
Status ParsePaxSparseMap(std::string_view numblocks, std::string_view map,
                         std::vector<SparseRegion>* out);

// PAX 1.0: fed the data section one 512-byte block at a time until done().
class SparseMap10 {
 public:
  Status FeedBlock(const uint8_t* block);
  bool done() const { return done_; }
  std::vector<SparseRegion> TakeRegions() { return std::move(regions_); }

 private:
  std::string pending_;  // the current token's digits
  bool have_count_ = false;
  bool done_ = false;
  int64_t count_ = 0;
  int64_t offset_ = 0;
  bool have_offset_ = false;
  uint64_t bytes_ = 0;
  std::vector<SparseRegion> regions_;
};

// Checks `regions` against the logical `size` and the `stored` bytes that follow the map, and
// lays out the file: holes become chunks with unit Chunk::kZeroUnit, each data region a chunk
// with unit 0 and unit_offset = the offset of its bytes after the map's end (the layer
// indexer maps those onto its units). kCorrupt when they do not fit.
Status SparseChunks(const std::vector<SparseRegion>& regions, uint64_t size, uint64_t stored,
                    std::vector<Chunk>* chunks);

}  // namespace imgfs::fs
