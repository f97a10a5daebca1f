// ContentReader: the bytes of the image's regular files, fetched, verified and decoded on
// demand.
//
// A read of [offset, offset + len) of a file finds the entry's chunks that overlap it; each
// chunk's unit is taken from an in-memory LRU of decoded units (bounded in bytes), or else read
// through the cache (which verifies it against the unit's sha256 and fetches it from `source`
// when absent) and decoded (fs/layer/decode.h). Chunks of Chunk::kZeroUnit are holes: zeros,
// no fetch. Sequential reads of a unit thus decode it once.
//
// Concurrent reads that need the same unit share one fetch and one decode (single-flight).
//
// Ownership: the reader keeps the layers alive; `cache` and `source` are borrowed and must
// outlive it. `source` may be null (offline): a unit not in the store is then kUnavailable.
//
// Thread-safety: Read and stats are safe from many threads at once.
//
// Failure: Read returns the Status of the first unit that could not be had (kDigestMismatch,
// kCorrupt, kUnavailable, kNotFound, kIoError...), logged once per unit with the layer digest
// and the unit's compressed offset; nothing is kept in the LRU for a failed unit, so a later
// read tries again. A file whose chunks do not cover what its size says is kCorrupt.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cache/blob_source.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"
#include "fs/tree/file_source.h"

namespace imgfs::fs {

class ContentReader {
 public:
  // Per-layer counters since the reader was made (bytes fetched are the cache's business).
  struct LayerStats {
    std::string blob_digest;
    uint64_t unit_decodes = 0;  // units read through the cache and decoded
    uint64_t lru_hits = 0;      // chunk reads served by an already decoded unit
    uint64_t shared_waits = 0;  // reads that waited for another read's fetch of the same unit
    uint64_t failures = 0;      // unit reads that failed
    uint64_t bytes_read = 0;    // file bytes returned to callers
  };

  ContentReader(std::vector<std::shared_ptr<const LayerIndex>> layers, cache::Cache* cache,
                cache::BlobSource* source, size_t lru_bytes = 64 << 20);
  ~ContentReader();
  ContentReader(const ContentReader&) = delete;
  ContentReader& operator=(const ContentReader&) = delete;

  // Copies up to `len` bytes of `file` from `offset` into `out`; fewer (possibly 0) at the end
  // of the file. REQUIRES: `out` has room for `len` bytes.
  Result<size_t> Read(const FileSource& file, uint64_t offset, size_t len, char* out);

  std::vector<LayerStats> stats() const;
  // Bytes of decoded units held in the LRU now (never above lru_bytes).
  size_t lru_bytes_used() const;

 private:
  using UnitKey = std::pair<uint32_t, uint32_t>;  // layer, unit
  using Decoded = std::shared_ptr<const std::string>;
  struct Flight;
  struct LruItem {
    UnitKey key;
    Decoded bytes;
  };
  struct Counters {
    std::atomic<uint64_t> unit_decodes{0};
    std::atomic<uint64_t> lru_hits{0};
    std::atomic<uint64_t> shared_waits{0};
    std::atomic<uint64_t> failures{0};
    std::atomic<uint64_t> bytes_read{0};
  };

  Result<Decoded> GetUnit(uint32_t layer, uint32_t unit);
  Result<Decoded> FetchAndDecode(uint32_t layer, uint32_t unit);
  void InsertLru(const UnitKey& key, const Decoded& bytes);  // REQUIRES: mu_ held

  const std::vector<std::shared_ptr<const LayerIndex>> layers_;
  cache::Cache* const cache_;
  cache::BlobSource* const source_;
  const size_t lru_limit_;
  std::unique_ptr<Counters[]> counters_;  // one per layer

  mutable std::mutex mu_;
  std::list<LruItem> lru_;                                        // GUARDED_BY(mu_), front = newest
  std::map<UnitKey, std::list<LruItem>::iterator> lru_index_;     // GUARDED_BY(mu_)
  size_t lru_used_ = 0;                                           // GUARDED_BY(mu_)
  std::map<UnitKey, std::shared_ptr<Flight>> in_flight_;          // GUARDED_BY(mu_)
  std::set<UnitKey> failure_logged_;                              // GUARDED_BY(mu_)
};

}  // namespace imgfs::fs
