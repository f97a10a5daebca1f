// ContentReader: the bytes of the image's regular files, fetched, verified and decoded on
// demand.
//
// A read of [offset, offset + len) of a file finds the entry's chunks that overlap it; each
// chunk's unit is taken from an in-memory LRU of decoded units (bounded in bytes), or else read
// through the cache (which fetches it from `source` when absent and verifies what it fetches)
// and decoded (fs/layer/decode.h). Units whose bytes carry a checksum of their own (gzip
// members, zstd frames with one) are read trusting the store (cache::UnitRef::trust_store: the
// store verified them when it published them) and checked by their decode instead of hashed
// again; stored bytes that fail are read again with the store's full check, which drops and
// refetches them (docs/cache.md, "Trusting the store"). Chunks of
// Chunk::kZeroUnit are holes: zeros, no fetch. Sequential reads of a unit thus decode it once.
//
// Concurrent reads that need the same unit share one fetch and one decode (base/single_flight.h:
// a fetch that fails or throws answers every reader waiting for it with an error).
//
// Units without a compressed sha256 (eStargz, zstd:chunked: the TOC only has digests of the
// decoded chunks) are handed to the cache with the UnitRef::verify of ImageLayers, which decodes
// them and checks every chunk of the unit against its Chunk::sha256; the decoded bytes that
// check produced go to the LRU, so such a unit is decoded once per fetch or store read, never
// twice.
//
// Fetching: when one Read needs several units that are not decoded yet, they are fetched with
// one cache::Cache::FetchUnits call (few coalesced range requests) before they are decoded.
// Sequential read-ahead: when reads of a file continue where the previous one ended, the units
// of the next read_ahead_bytes of the file are fetched in the background (one worker thread, a
// short bounded queue; work that does not fit is dropped, never waited for), so the next reads
// find them present. Walks of the tree (tar, cp -r, scanners) read small files one after the
// other, mostly in blob order: from the third file in a row that starts where the last one's
// data ended, the next read_ahead_bytes of the layer's units are fetched the same way. A read
// of one file, or reads in any other order, start nothing. The worker is stopped and joined by
// the destructor.
//
// Ownership: the reader shares the mount's ImageLayers; `cache` and `source` are borrowed and
// must outlive it. `source` may be null (offline): a unit not in the store is then kUnavailable.
//
// Thread-safety: Read and stats are safe from many threads at once. The read-ahead worker only
// touches the cache, the source and the LRU (under its mutex).
//
// Failure: Read returns the Status of the first unit that could not be had (kDigestMismatch,
// kCorrupt, kUnavailable, kNotFound, kIoError...), logged once per unit with the layer digest
// and the unit's compressed offset; nothing is kept in the LRU for a failed unit, so a later
// read tries again. A file whose chunks do not cover what its size says is kCorrupt. A layer
// that ImageLayers marks failed (its diff_id, fs/tree/layer_check.h) answers every read of its
// files with that error. A file of a borrowed layer (an index found through referrers) is
// served only once the tar header in front of its data matches its entry (CheckBorrowedEntry).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "base/blob_source.h"
#include "base/mutex.h"
#include "base/single_flight.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"
#include "fs/tree/file_source.h"
#include "fs/tree/image_layers.h"

namespace imgfs::fs {

class ContentReader {
 public:
  // Per-layer counters since the reader was made (bytes fetched are the cache's business).
  struct LayerStats {
    std::string blob_digest;
    uint64_t unit_decodes = 0;     // units read through the cache and decoded
    uint64_t lru_hits = 0;         // chunk reads served by an already decoded unit
    uint64_t shared_waits = 0;     // reads that waited for another read's fetch of the same unit
    uint64_t failures = 0;         // unit reads that failed
    uint64_t bytes_read = 0;       // file bytes returned to callers
    uint64_t readahead_units = 0;  // units handed to the background read-ahead
  };

  static constexpr uint64_t kReadAheadBytes = 4 << 20;
  // The kernel keeps the decoded pages of what is read (keep_cache); the LRU only has to carry
  // a unit across the kernel's requests (up to 1 MiB each) and read-ahead: a few units.
  static constexpr size_t kDefaultLruBytes = 16 << 20;
  // Most units one Read fetches in one coalesced request.
  static constexpr uint64_t kForegroundRequestBytes = 16 << 20;

  // `read_ahead_bytes`: how far ahead of a sequential reader units are fetched (file bytes,
  // and at most that many compressed bytes per background request); 0 turns read-ahead off.
  ContentReader(std::shared_ptr<const ImageLayers> layers, cache::Cache* cache, BlobSource* source,
                size_t lru_bytes = kDefaultLruBytes, uint64_t read_ahead_bytes = kReadAheadBytes);
  ~ContentReader();
  ContentReader(const ContentReader&) = delete;
  ContentReader& operator=(const ContentReader&) = delete;

  // One piece of a read's answer, in file order: bytes of a decoded unit (`unit` keeps them
  // alive) or zeros of a hole (`unit` null, `data` in a static block of zeros).
  struct Piece {
    std::shared_ptr<const std::string> unit;
    const char* data = nullptr;
    size_t size = 0;
  };

  // Copies up to `len` bytes of `file` from `offset` into `out`; fewer (possibly 0) at the end
  // of the file. REQUIRES: `out` has room for `len` bytes.
  Result<size_t> Read(const FileSource& file, uint64_t offset, size_t len, char* out);
  // The same bytes as Read, without copying them: `*pieces` (cleared first) points into the
  // decoded units, which the pieces keep alive (the FUSE edge replies with them as iovecs).
  // Returns the byte count.
  Result<size_t> ReadPieces(const FileSource& file, uint64_t offset, size_t len,
                            std::vector<Piece>* pieces);

  // --- decoded files, for FUSE passthrough (cache/decoded_files.h) ---
  // Files at least this large that are read whole are written out decoded; smaller ones gain
  // little (their pages stay in the page cache after one read anyway).
  static constexpr uint64_t kDecodedFileMinBytes = 1 << 20;
  // From now on, a file of kDecodedFileMinBytes or more whose reads reached its end and
  // returned at least its size in bytes is written out whole, decoded, into the cache by a
  // background thread (from the units the reads just verified and stored). Files of borrowed
  // layers are not: their entries are vouched for by header checks, not by the index built
  // here. The FUSE edge turns this on once the kernel took passthrough. Files queued when the
  // reader is destroyed are still written (the destructor waits).
  void KeepDecodedFiles();
  // No more, for good (the kernel refused passthrough after all); what is queued is written.
  void StopDecodedFiles() { keep_decoded_.store(false); }
  // A read-only descriptor (the caller closes it) of `file`'s decoded copy in the cache;
  // kNotFound when there is none (or no cache, or a borrowed layer).
  Result<int> OpenDecodedFile(const FileSource& file);
  // Decoded files this reader wrote, and those that failed (logged).
  uint64_t decoded_files_written() const { return decoded_written_.load(); }
  uint64_t decoded_files_failed() const { return decoded_failed_.load(); }
  // Opens the FUSE edge had the kernel serve from a decoded copy (it counts them here, with
  // the other reading figures of `imgfs stats`).
  void CountPassthroughOpen() { passthrough_opens_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t passthrough_opens() const { return passthrough_opens_.load(); }

  std::vector<LayerStats> stats() const;
  // Blocks until the read-ahead has nothing queued and nothing running: every unit it was
  // handed so far is in the store, or its fetch failed. Returns at once without read-ahead.
  // For tests, which can then check exactly what was fetched ahead.
  void WaitIdle();
  // True when WaitIdle would return at once (`imgfs stats` shows it, so that tests of a
  // mount can wait for the read-ahead to settle).
  bool IsIdle() const;
  // Bytes of decoded units held in the LRU now (never above lru_bytes; their pooled buffers
  // may each hold up to BufferPool::MaxSlack more, base/buffer_pool.h).
  size_t lru_bytes_used() const;

 private:
  using UnitKey = std::pair<uint32_t, uint32_t>;  // layer, unit
  using Decoded = std::shared_ptr<const std::string>;
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
    std::atomic<uint64_t> readahead_units{0};
  };
  // Where a sequential reader of one file is.
  struct Stream {
    uint64_t next_offset = 0;  // where the last read ended
    uint64_t ahead_until = 0;  // file offset up to which read-ahead was requested
  };

  // Where a reader walking a layer's files in blob order is.
  struct LayerWalk {
    static constexpr uint32_t kNone = 0xffffffffu;
    uint32_t last_entry = kNone;  // entry of the last read
    uint32_t last_unit = 0;       // last unit that read touched
    int run = 0;                  // files in a row, each starting where the last one ended
    uint32_t ahead_until = 0;     // read-ahead was asked for units below this
    uint32_t ahead_mid = 0;       // ask again once reads reach this unit
  };

  // ReadPieces; `foreground` reads (the callers') count in the stats, drive read-ahead and may
  // queue the file's decoded copy, the decoded-file writer's own do not.
  Result<size_t> ReadPiecesImpl(const FileSource& file, uint64_t offset, size_t len,
                                std::vector<Piece>* pieces, bool foreground);
  // Counts a foreground read of [offset, end) of `file`; queues its decoded copy when due.
  void NoteReadForDecoded(const FileSource& file, uint64_t offset, uint64_t end);
  void DecodedFileLoop();
  // True when written; false when there was one already or no room under the size limit.
  Result<bool> WriteDecodedFile(const FileSource& file);
  Result<Decoded> GetUnit(uint32_t layer, uint32_t unit);
  // The header check of a file of a borrowed layer (ImageLayers, fs/tree/header_check.h),
  // once per entry; a mismatch fails the layer (logged) and is returned.
  Status CheckBorrowedEntry(const FileSource& file, const Entry& entry);
  // What GetUnit's flight for a unit runs: the LRU once more (the previous flight may have just
  // filled it), else FetchAndDecode; the outcome goes to the LRU or, once, to the log.
  Result<Decoded> FetchDecodeAndKeep(uint32_t layer, uint32_t unit);
  Result<Decoded> FetchAndDecode(uint32_t layer, uint32_t unit);
  void InsertLru(const UnitKey& key, const Decoded& bytes) REQUIRES(mu_);
  // The cache's view of a unit (ImageLayers::MakeUnitRef). The bytes decoded by its verify go to
  // *slot when given, else to the LRU.
  cache::UnitRef MakeUnitRef(uint32_t layer, uint32_t unit,
                             std::shared_ptr<Decoded> slot = nullptr);
  // Units of `entry` overlapping file bytes [begin, end) that are not decoded in the LRU, at
  // most `max_clen` compressed bytes of them (0 = no bound), in file order.
  std::vector<uint32_t> UnitsToFetch(uint32_t layer, const Entry& entry, uint64_t begin,
                                     uint64_t end, uint64_t max_clen);
  void MaybeReadAhead(const FileSource& file, const Entry& entry, uint64_t offset, uint64_t end);
  // Read-ahead in blob order, for walks of the tree that read file after file.
  void MaybeReadAheadAcrossFiles(const FileSource& file, uint64_t offset, uint32_t first_unit,
                                 uint32_t last_unit);
  // Hands `units` of `layer` to the read-ahead thread (dropped when its queue is full).
  void QueueReadAhead(uint32_t layer, const std::vector<uint32_t>& units);
  void ReadAheadLoop();
  // Constant after construction.
  const std::shared_ptr<const ImageLayers> layers_;
  cache::Cache* const cache_;
  BlobSource* const source_;
  const size_t lru_limit_;
  const uint64_t read_ahead_bytes_;
  const std::unique_ptr<Counters[]> counters_;  // one per layer (atomics)

  // One fetch and decode per unit for concurrent readers (thread-safe itself).
  SingleFlight<UnitKey, Decoded> flights_;

  // State below is protected by mu_ (the LRU of decoded units).
  mutable Mutex mu_;
  std::list<LruItem> lru_ GUARDED_BY(mu_);  // front = newest
  std::map<UnitKey, std::list<LruItem>::iterator> lru_index_ GUARDED_BY(mu_);
  size_t lru_used_ GUARDED_BY(mu_) = 0;
  std::set<UnitKey> failure_logged_ GUARDED_BY(mu_);

  // State below is protected by ra_mu_ (read-ahead).
  mutable Mutex ra_mu_;
  CondVar ra_cv_{&ra_mu_};       // signalled when work is queued or the reader stops
  CondVar ra_idle_cv_{&ra_mu_};  // signalled when the queue and the worker go idle
  std::map<std::pair<uint32_t, uint32_t>, Stream> streams_ GUARDED_BY(ra_mu_);
  std::vector<LayerWalk> walks_ GUARDED_BY(ra_mu_);  // per layer
  std::deque<std::vector<cache::UnitRef>> ra_queue_ GUARDED_BY(ra_mu_);
  bool ra_busy_ GUARDED_BY(ra_mu_) = false;  // the worker is fetching a popped item
  bool ra_stop_ GUARDED_BY(ra_mu_) = false;

  // State below is protected by df_mu_ (decoded files).
  Mutex df_mu_;
  CondVar df_cv_{&df_mu_};  // signalled when a file is queued or the reader stops
  std::atomic<bool> keep_decoded_{false};
  struct DecodedProgress {
    uint64_t bytes = 0;        // returned by foreground reads
    bool reached_end = false;  // a read ended at the file's end
  };
  std::map<std::pair<uint32_t, uint32_t>, DecodedProgress> df_progress_ GUARDED_BY(df_mu_);
  std::set<std::pair<uint32_t, uint32_t>> df_done_ GUARDED_BY(df_mu_);  // queued or written
  std::deque<FileSource> df_queue_ GUARDED_BY(df_mu_);
  bool df_stop_ GUARDED_BY(df_mu_) = false;
  std::atomic<uint64_t> decoded_written_{0};
  std::atomic<uint64_t> decoded_failed_{0};
  std::atomic<uint64_t> passthrough_opens_{0};
  std::thread df_thread_;

  std::thread ra_thread_;  // last: started once everything above exists
};

}  // namespace imgfs::fs
