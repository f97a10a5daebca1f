#include "fs/layer/tar_sparse.h"

#include <limits>

#include "base/strings.h"
#include "fs/layer/tar_fields.h"

namespace imgfs::fs {
namespace {

constexpr size_t kBlock = 512;

Status TooMany() {
  return Status::Corrupt("sparse map has more than " + std::to_string(kMaxSparseRegions) +
                         " regions");
}

}  // namespace

Status ParseOldGnuSparse(const uint8_t* area, size_t count, std::vector<SparseRegion>* out) {
  for (size_t i = 0; i < count; ++i) {
    const char* e = reinterpret_cast<const char*>(area) + 24 * i;
    if (e[0] == '\0') break;
    SparseRegion r;
    if (!ParseNumeric(std::string_view(e, 12), &r.offset) ||
        !ParseNumeric(std::string_view(e + 12, 12), &r.length)) {
      return Status::Corrupt("bad number in an old GNU sparse map");
    }
    if (out->size() >= kMaxSparseRegions) return TooMany();
    out->push_back(r);
  }
  return Status::Ok();
}

Status ParsePaxSparseMap(std::string_view numblocks, std::string_view map,
                         std::vector<SparseRegion>* out) {
  int64_t n = 0;
  if (!ParseGoInt(numblocks, &n) || n < 0) {
    return Status::Corrupt("GNU.sparse.numblocks is missing or not a number");
  }
  if (static_cast<uint64_t>(n) > kMaxSparseRegions) return TooMany();
  std::vector<int64_t> numbers;
  for (std::string_view number : Split(map, ',')) {
    if (map.empty()) break;  // an empty map holds no numbers, not one empty one
    int64_t v = 0;
    if (!ParseGoInt(number, &v)) return Status::Corrupt("GNU.sparse.map holds a bad number");
    if (numbers.size() >= 2 * kMaxSparseRegions) return TooMany();
    numbers.push_back(v);
  }
  if (numbers.size() != 2 * static_cast<uint64_t>(n)) {
    return Status::Corrupt("GNU.sparse.map does not hold GNU.sparse.numblocks regions");
  }
  for (size_t i = 0; i < numbers.size(); i += 2) out->push_back({numbers[i], numbers[i + 1]});
  return Status::Ok();
}

Status SparseMap10::FeedBlock(const uint8_t* block) {
  bytes_ += kBlock;
  if (bytes_ > kMaxSparseMapBytes) {
    return Status::Corrupt("GNU sparse 1.0 map is larger than " +
                           std::to_string(kMaxSparseMapBytes) + " bytes");
  }
  // Go reads whole blocks until it has the newlines it needs, and ignores the rest of the
  // last block.
  for (size_t i = 0; i < kBlock && !done_; ++i) {
    char c = static_cast<char>(block[i]);
    if (c != '\n') {
      if (pending_.size() > 24) return Status::Corrupt("GNU sparse 1.0 map holds a bad number");
      pending_.push_back(c);
      continue;
    }
    int64_t v = 0;
    if (!ParseGoInt(pending_, &v)) {
      return Status::Corrupt("GNU sparse 1.0 map holds a bad number");
    }
    pending_.clear();
    if (!have_count_) {
      if (v < 0) return Status::Corrupt("GNU sparse 1.0 map has a negative count");
      if (static_cast<uint64_t>(v) > kMaxSparseRegions) return TooMany();
      have_count_ = true;
      count_ = v;
    } else if (!have_offset_) {
      offset_ = v;
      have_offset_ = true;
    } else {
      regions_.push_back({offset_, v});
      have_offset_ = false;
    }
    done_ = have_count_ && static_cast<int64_t>(regions_.size()) == count_ && !have_offset_;
  }
  return Status::Ok();
}

Status SparseChunks(const std::vector<SparseRegion>& regions, uint64_t size, uint64_t stored,
                    std::vector<Chunk>* chunks) {
  chunks->clear();
  if (size > static_cast<uint64_t>(INT64_MAX)) return Status::Corrupt("sparse size out of range");
  int64_t prev_end = 0;
  uint64_t data = 0;
  for (const SparseRegion& r : regions) {
    if (r.offset < 0 || r.length < 0 || r.offset > INT64_MAX - r.length ||
        static_cast<uint64_t>(r.offset + r.length) > size || prev_end > r.offset) {
      return Status::Corrupt(
          "sparse map regions overlap, are out of order or lie past the "
          "file's size");
    }
    prev_end = r.offset + r.length;
    if (r.length == 0) continue;
    uint64_t off = static_cast<uint64_t>(r.offset);
    uint64_t covered = chunks->empty() ? 0 : chunks->back().file_offset + chunks->back().length;
    if (off > covered) chunks->push_back({covered, off - covered, Chunk::kZeroUnit, 0});
    // Adjacent data regions stay separate chunks; that costs nothing.
    chunks->push_back({off, static_cast<uint64_t>(r.length), 0, data});
    data += static_cast<uint64_t>(r.length);
  }
  if (data != stored) {
    return Status::Corrupt("sparse map describes " + std::to_string(data) +
                           " bytes of data but the member stores " + std::to_string(stored));
  }
  uint64_t covered = chunks->empty() ? 0 : chunks->back().file_offset + chunks->back().length;
  if (size > covered) chunks->push_back({covered, size - covered, Chunk::kZeroUnit, 0});
  return Status::Ok();
}

}  // namespace imgfs::fs
