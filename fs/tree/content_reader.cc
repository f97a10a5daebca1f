#include "fs/tree/content_reader.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <system_error>
#include <tuple>

#include "base/buffer_pool.h"
#include "base/log.h"
#include "fs/tree/header_check.h"

namespace imgfs::fs {
namespace {

// Read-ahead requests waiting for the worker; more are dropped (the reads fetch on demand).
constexpr size_t kReadAheadQueue = 4;
// How long the decoded-file writer waits before it looks again whether fetches are in flight.
constexpr std::chrono::milliseconds kDecodedYieldPause{50};
// Failed writes of decoded files after which a reader writes no more.
constexpr uint64_t kMaxDecodedFailures = 3;
// Files whose sequential state is remembered; forgetting costs one missed read-ahead.
constexpr size_t kMaxStreams = 4096;
// What the pieces of holes point at.
constexpr char kZeros[64 << 10] = {};

}  // namespace

ContentReader::ContentReader(std::shared_ptr<const ImageLayers> layers, cache::Cache* cache,
                             BlobSource* source, size_t lru_bytes, uint64_t read_ahead_bytes)
    : layers_(std::move(layers)),
      cache_(cache),
      source_(source),
      lru_limit_(lru_bytes),
      read_ahead_bytes_(read_ahead_bytes),
      counters_(new Counters[layers_->size()]),
      walks_(layers_->size()) {
  if (cache_ != nullptr && source_ != nullptr && read_ahead_bytes_ > 0) {
    try {
      ra_thread_ = std::thread([this] { ReadAheadLoop(); });
    } catch (const std::system_error& e) {
      IMGFS_LOG(kWarning, "no read-ahead: cannot start its thread: " << e.what());
    }
  }
}

ContentReader::~ContentReader() {
  {
    MutexLock lock(&df_mu_);
    df_stop_ = true;
  }
  df_cv_.SignalAll();
  if (df_thread_.joinable()) df_thread_.join();  // writes what is queued first
  {
    MutexLock lock(&ra_mu_);
    ra_stop_ = true;
    ra_queue_.clear();
  }
  ra_cv_.SignalAll();
  ra_idle_cv_.SignalAll();
  if (ra_thread_.joinable()) ra_thread_.join();
}

cache::UnitRef ContentReader::MakeUnitRef(uint32_t layer, uint32_t unit,
                                          std::shared_ptr<Decoded> slot) {
  return layers_->MakeUnitRef(
      layer, unit, [this, layer, unit, slot = std::move(slot)](std::string decoded) {
        counters_[layer].unit_decodes.fetch_add(1, std::memory_order_relaxed);
        Decoded bytes = UnitBuffers().Share(std::move(decoded));
        if (slot) {
          *slot = std::move(bytes);
        } else {
          MutexLock lock(&mu_);
          InsertLru(UnitKey{layer, unit}, bytes);
        }
      });
}

std::vector<uint32_t> ContentReader::UnitsToFetch(uint32_t layer, const Entry& entry,
                                                  uint64_t begin, uint64_t end, uint64_t max_clen) {
  const LayerIndex& index = *layers_->layer(layer);
  const std::vector<Chunk>& chunks = entry.chunks;
  auto it = std::upper_bound(chunks.begin(), chunks.end(), begin,
                             [](uint64_t off, const Chunk& c) { return off < c.file_offset; });
  if (it != chunks.begin()) --it;
  std::vector<uint32_t> out;
  uint64_t clen = 0;
  MutexLock lock(&mu_);
  for (; it != chunks.end() && it->file_offset < end; ++it) {
    if (it->unit == Chunk::kZeroUnit || it->unit >= index.units.size()) continue;
    if (std::find(out.begin(), out.end(), it->unit) != out.end()) continue;
    if (lru_index_.count(UnitKey{layer, it->unit})) continue;
    const uint64_t unit_clen = index.units[it->unit].clen;
    if (max_clen != 0 && !out.empty() && clen + unit_clen > max_clen) break;
    clen += unit_clen;
    out.push_back(it->unit);
  }
  return out;
}

Result<size_t> ContentReader::Read(const FileSource& file, uint64_t offset, size_t len, char* out) {
  thread_local std::vector<Piece> pieces;
  Result<size_t> n = ReadPieces(file, offset, len, &pieces);
  if (n.ok()) {
    for (const Piece& p : pieces) {
      std::memcpy(out, p.data, p.size);
      out += p.size;
    }
  }
  pieces.clear();  // lets go of the units
  return n;
}

Result<size_t> ContentReader::ReadPieces(const FileSource& file, uint64_t offset, size_t len,
                                         std::vector<Piece>* pieces) {
  return ReadPiecesImpl(file, offset, len, pieces, true);
}

Result<size_t> ContentReader::ReadPiecesImpl(const FileSource& file, uint64_t offset, size_t len,
                                             std::vector<Piece>* pieces, bool foreground) {
  pieces->clear();
  if (layers_->layer(file.layer) == nullptr ||
      file.entry >= layers_->layer(file.layer)->entries.size()) {
    return Status::InvalidArgument("read of a file that is not in the image's layers");
  }
  const LayerIndex& layer = *layers_->layer(file.layer);
  const Entry& entry = layer.entries[file.entry];
  if (entry.type != EntryType::kRegular) {
    return Status::InvalidArgument("read of \"" + entry.path + "\", which is not a regular file");
  }
  // A layer found bad after the mount began (its diff_id, fs/tree/layer_check.h).
  IMGFS_RETURN_IF_ERROR(layers_->LayerStatus(file.layer));
  if (offset >= entry.size || len == 0) return size_t{0};
  if (layers_->borrowed(file.layer) && !layers_->HeaderChecked(file.layer, file.entry)) {
    IMGFS_RETURN_IF_ERROR(CheckBorrowedEntry(file, entry));
  }
  const uint64_t end = offset + std::min<uint64_t>(len, entry.size - offset);
  auto corrupt = [&](const char* what) {
    return Status::Corrupt("layer " + layer.blob_digest + ": file \"" + entry.path + "\" " + what);
  };

  // Several missing units: one coalesced fetch instead of a request per unit. Failures are
  // left to the unit reads below, which retry and report them per unit.
  if (source_ != nullptr && cache_ != nullptr) {
    std::vector<uint32_t> missing = UnitsToFetch(file.layer, entry, offset, end, 0);
    if (missing.size() > 1) {
      std::vector<cache::UnitRef> refs;
      refs.reserve(missing.size());
      for (uint32_t u : missing) refs.push_back(MakeUnitRef(file.layer, u));
      Status s = cache_->FetchUnits(refs, source_, kForegroundRequestBytes);
      if (!s.ok()) IMGFS_LOG(kDebug, "coalesced fetch: " << s.ToString());
    }
  }

  const std::vector<Chunk>& chunks = entry.chunks;
  auto it = std::upper_bound(chunks.begin(), chunks.end(), offset,
                             [](uint64_t off, const Chunk& c) { return off < c.file_offset; });
  if (it != chunks.begin()) --it;
  uint64_t pos = offset;
  uint32_t first_unit = Chunk::kZeroUnit;
  uint32_t last_unit = 0;
  for (; pos < end && it != chunks.end(); ++it) {
    const Chunk& c = *it;
    if (c.file_offset > pos) return corrupt("has a hole its chunks do not cover");
    if (c.length > UINT64_MAX - c.file_offset) return corrupt("has a chunk past 2^64");
    const uint64_t chunk_end = c.file_offset + c.length;
    if (chunk_end <= pos) continue;
    const uint64_t take = std::min(end, chunk_end) - pos;
    const uint64_t within = pos - c.file_offset;
    if (c.unit == Chunk::kZeroUnit) {
      for (uint64_t left = take; left > 0;) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof(kZeros)));
        pieces->push_back({nullptr, kZeros, n});
        left -= n;
      }
    } else {
      if (c.unit >= layer.units.size()) return corrupt("names a unit the layer does not have");
      IMGFS_ASSIGN_OR_RETURN(Decoded bytes, GetUnit(file.layer, c.unit));
      if (c.unit_offset > bytes->size() || within + take > bytes->size() - c.unit_offset) {
        return corrupt("has a chunk past the end of its unit");
      }
      const char* data = bytes->data() + c.unit_offset + within;
      if (!pieces->empty() && pieces->back().unit == bytes &&
          pieces->back().data + pieces->back().size == data) {
        pieces->back().size += take;  // chunks that follow each other in one unit: one piece
      } else {
        pieces->push_back({std::move(bytes), data, static_cast<size_t>(take)});
      }
      if (first_unit == Chunk::kZeroUnit) first_unit = c.unit;
      last_unit = c.unit;
    }
    pos += take;
  }
  if (pos < end) return corrupt("is longer than its chunks");
  if (!foreground) return static_cast<size_t>(end - offset);
  counters_[file.layer].bytes_read.fetch_add(end - offset, std::memory_order_relaxed);
  if (keep_decoded_.load(std::memory_order_relaxed) && entry.size >= kDecodedFileMinBytes) {
    NoteReadForDecoded(file, offset, end);
  }
  MaybeReadAhead(file, entry, offset, end);
  if (first_unit != Chunk::kZeroUnit)
    MaybeReadAheadAcrossFiles(file, offset, first_unit, last_unit);
  return static_cast<size_t>(end - offset);
}

void ContentReader::KeepDecodedFiles() {
  if (cache_ == nullptr || keep_decoded_.load()) return;
  MutexLock lock(&df_mu_);
  if (df_thread_.joinable()) return;
  try {
    df_thread_ = std::thread([this] { DecodedFileLoop(); });
    keep_decoded_.store(true);
  } catch (const std::system_error& e) {
    IMGFS_LOG(kWarning, "no decoded files: cannot start their thread: " << e.what());
  }
}

Result<int> ContentReader::OpenDecodedFile(const FileSource& file) {
  const LayerIndex* layer = layers_->layer(file.layer);
  if (cache_ == nullptr || layer == nullptr || file.entry >= layer->entries.size() ||
      layers_->borrowed(file.layer)) {
    return Status::NotFound("no decoded file");
  }
  IMGFS_RETURN_IF_ERROR(layers_->LayerStatus(file.layer));
  const Entry& entry = layer->entries[file.entry];
  if (entry.type != EntryType::kRegular) return Status::NotFound("not a regular file");
  return cache_->OpenDecodedFile(layer->blob_digest, entry.path, entry.size);
}

void ContentReader::NoteReadForDecoded(const FileSource& file, uint64_t offset, uint64_t end) {
  if (layers_->borrowed(file.layer)) return;
  const std::pair<uint32_t, uint32_t> key{file.layer, file.entry};
  {
    MutexLock lock(&df_mu_);
    if (df_stop_ || df_done_.count(key)) return;
    DecodedProgress& progress = df_progress_[key];
    progress.bytes += end - offset;
    progress.reached_end |= end == file.size;
    // Read to its end, and as many bytes as it has: most likely read whole. (The kernel's
    // read-ahead requests run in parallel, so the one that reaches the end may not be the
    // last. A reader that skipped parts only makes the writer fetch them.)
    if (!progress.reached_end || progress.bytes < file.size) return;
    df_progress_.erase(key);
    df_done_.insert(key);
    df_queue_.push_back(file);
  }
  df_cv_.Signal();
}

void ContentReader::DecodedFileLoop() {
  for (;;) {
    FileSource file;
    {
      MutexLock lock(&df_mu_);
      while (!df_stop_ && df_queue_.empty()) df_cv_.Wait();
      if (df_queue_.empty()) return;  // stopped, and nothing left to write
      // Lowest priority: while the mount fetches from the registry (a cold read of the image,
      // a prefetch), the copies wait; they cost a decode and a disk write each. A reader that
      // stops writes what is queued at once.
      while (!df_stop_ && cache_->FetchesInFlight() > 0) {
        (void)df_cv_.WaitFor(kDecodedYieldPause);
      }
      file = df_queue_.front();
      df_queue_.pop_front();
    }
    Result<bool> written = WriteDecodedFile(file);
    if (written.ok()) {
      if (*written) decoded_written_.fetch_add(1);
    } else {
      const Status& s = written.status();
      IMGFS_LOG(kWarning, "no decoded copy: " << s.ToString());
      if (decoded_failed_.fetch_add(1) + 1 == kMaxDecodedFailures) {
        // A filesystem without user xattrs, a full disk: each further try would only cost a
        // decode of the whole file.
        keep_decoded_.store(false);
        IMGFS_LOG(kWarning, "no more decoded copies for this mount: " << kMaxDecodedFailures
                                                                      << " writes failed");
      }
    }
  }
}

Result<bool> ContentReader::WriteDecodedFile(const FileSource& file) {
  const LayerIndex& layer = *layers_->layer(file.layer);
  const Entry& entry = layer.entries[file.entry];
  // Already there (an earlier mount wrote it): nothing to do.
  Result<int> existing = cache_->OpenDecodedFile(layer.blob_digest, entry.path, entry.size);
  if (existing.ok()) {
    ::close(*existing);
    return false;
  }
  return cache_->PutDecodedFile(
      layer.blob_digest, entry.path, entry.size,
      [&](const std::function<Status(std::string_view)>& sink) -> Status {
        constexpr size_t kStep = 1 << 20;
        std::vector<Piece> pieces;
        for (uint64_t off = 0; off < entry.size;) {
          IMGFS_ASSIGN_OR_RETURN(size_t n, ReadPiecesImpl(file, off, kStep, &pieces, false));
          if (n == 0) return Status::Corrupt("file \"" + entry.path + "\" ends early");
          for (const Piece& p : pieces) IMGFS_RETURN_IF_ERROR(sink({p.data, p.size}));
          pieces.clear();
          off += n;
        }
        // The layer may have been found bad (its diff_id) while the file was read.
        return layers_->LayerStatus(file.layer);
      });
}

void ContentReader::MaybeReadAhead(const FileSource& file, const Entry& entry, uint64_t offset,
                                   uint64_t end) {
  if (!ra_thread_.joinable() || end >= entry.size) return;
  uint64_t from, until;
  {
    MutexLock lock(&ra_mu_);
    if (streams_.size() >= kMaxStreams) streams_.clear();
    Stream& stream = streams_[{file.layer, file.entry}];
    const bool sequential = offset != 0 && offset == stream.next_offset;
    stream.next_offset = end;
    if (!sequential) {
      stream.ahead_until = end;
      return;
    }
    until = std::min<uint64_t>(entry.size, end + read_ahead_bytes_);
    // Ask again only when the reader has used up half of the window, so requests stay large.
    if (stream.ahead_until >= end + read_ahead_bytes_ / 2 || stream.ahead_until >= until) return;
    from = std::max(end, stream.ahead_until);
    stream.ahead_until = until;
  }
  QueueReadAhead(file.layer, UnitsToFetch(file.layer, entry, from, until, read_ahead_bytes_));
}

void ContentReader::MaybeReadAheadAcrossFiles(const FileSource& file, uint64_t offset,
                                              uint32_t first_unit, uint32_t last_unit) {
  if (!ra_thread_.joinable()) return;
  const LayerIndex& layer = *layers_->layer(file.layer);
  std::vector<uint32_t> units;
  {
    MutexLock lock(&ra_mu_);
    LayerWalk& walk = walks_[file.layer];
    if (file.entry != walk.last_entry) {
      // A new file, read from its start, whose data follows the last file's in the blob.
      const bool next = walk.last_entry != LayerWalk::kNone && offset == 0 &&
                        (first_unit == walk.last_unit || first_unit == walk.last_unit + 1);
      walk.run = next ? walk.run + 1 : 0;
      if (!next) walk.ahead_until = walk.ahead_mid = 0;
    }
    walk.last_entry = file.entry;
    walk.last_unit = last_unit;
    // The third file in a row in blob order: a walk of the tree (tar, cp -r, a scanner), which
    // will want the following files too.
    if (walk.run < 2) return;
    // Ask again only once the walk is past the middle of the last window: requests stay large.
    if (walk.ahead_mid > last_unit) return;
    uint32_t from = std::max(last_unit + 1, walk.ahead_until);
    uint64_t bytes = 0;
    uint32_t until = from;
    while (until < layer.units.size() && bytes < read_ahead_bytes_) {
      bytes += layer.units[until++].clen;
    }
    if (until <= from) return;
    walk.ahead_mid = from + (until - from) / 2;
    walk.ahead_until = until;
    units.reserve(until - from);
    for (uint32_t u = from; u < until; ++u) units.push_back(u);
  }
  QueueReadAhead(file.layer, units);
}

void ContentReader::QueueReadAhead(uint32_t layer, const std::vector<uint32_t>& units) {
  if (units.empty()) return;
  std::vector<cache::UnitRef> refs;
  refs.reserve(units.size());
  for (uint32_t u : units) refs.push_back(MakeUnitRef(layer, u));
  {
    MutexLock lock(&ra_mu_);
    if (ra_stop_ || ra_queue_.size() >= kReadAheadQueue) return;
    ra_queue_.push_back(std::move(refs));
  }
  counters_[layer].readahead_units.fetch_add(units.size(), std::memory_order_relaxed);
  ra_cv_.Signal();
}

void ContentReader::ReadAheadLoop() {
  for (;;) {
    std::vector<cache::UnitRef> refs;
    {
      MutexLock lock(&ra_mu_);
      while (!ra_stop_ && ra_queue_.empty()) ra_cv_.Wait();
      if (ra_stop_) return;
      refs = std::move(ra_queue_.front());
      ra_queue_.pop_front();
      ra_busy_ = true;
    }
    // Read-ahead is a guess: its failures cost nothing but a later on-demand fetch.
    try {
      Status s = cache_->FetchUnits(refs, source_, read_ahead_bytes_);
      if (!s.ok()) IMGFS_LOG(kDebug, "read-ahead: " << s.ToString());
    } catch (const std::exception& e) {
      IMGFS_LOG(kWarning, "read-ahead failed unexpectedly: " << e.what());
    }
    {
      MutexLock lock(&ra_mu_);
      ra_busy_ = false;
    }
    ra_idle_cv_.SignalAll();
  }
}

void ContentReader::WaitIdle() {
  MutexLock lock(&ra_mu_);
  while (!ra_stop_ && (!ra_queue_.empty() || ra_busy_)) ra_idle_cv_.Wait();
}

bool ContentReader::IsIdle() const {
  MutexLock lock(&ra_mu_);
  return ra_stop_ || (ra_queue_.empty() && !ra_busy_);
}

Status ContentReader::CheckBorrowedEntry(const FileSource& file, const Entry& entry) {
  const LayerIndex& index = *layers_->layer(file.layer);
  constexpr uint64_t kHeader = 512;
  // The 512 bytes in front of the data, read from the (verified) units that hold them.
  std::string header;
  Status st;
  if (entry.chunks.empty() || entry.chunks[0].unit == Chunk::kZeroUnit ||
      entry.chunks[0].unit >= index.units.size()) {
    st = CheckTarHeaderFor("", entry);
  } else {
    const Chunk& first = entry.chunks[0];
    const uint64_t data = layers_->UnitStreamOffset(file.layer, first.unit) + first.unit_offset;
    uint64_t pos = data < kHeader ? data : data - kHeader;
    for (uint32_t u = first.unit; data >= kHeader && pos < data;) {
      const uint64_t ustart = layers_->UnitStreamOffset(file.layer, u);
      if (ustart > pos) {
        if (u == 0) break;
        --u;
        continue;
      }
      Result<Decoded> bytes = GetUnit(file.layer, u);
      if (!bytes.ok()) return bytes.status();
      const uint64_t stop = std::min<uint64_t>(data, ustart + (*bytes)->size());
      if (stop <= pos) break;
      header.append(**bytes, pos - ustart, stop - pos);
      pos = stop;
      ++u;
    }
    st = CheckTarHeaderFor(header, entry);
  }
  if (st.ok()) {
    layers_->MarkHeaderChecked(file.layer, file.entry);
    return st;
  }
  Status verdict = Status::Corrupt("layer " + index.blob_digest +
                                   ": its shared index does not match the layer: " + st.message());
  IMGFS_LOG(kError, verdict.ToString() << "; its files are not served any more");
  layers_->FailLayer(file.layer, verdict);
  return verdict;
}

Result<ContentReader::Decoded> ContentReader::GetUnit(uint32_t layer, uint32_t unit) {
  const UnitKey key{layer, unit};
  {
    MutexLock lock(&mu_);
    auto hit = lru_index_.find(key);
    if (hit != lru_index_.end()) {
      lru_.splice(lru_.begin(), lru_, hit->second);
      counters_[layer].lru_hits.fetch_add(1, std::memory_order_relaxed);
      return hit->second->bytes;
    }
  }
  SingleFlight<UnitKey, Decoded>::Call call = flights_.Join(key);
  if (!call.leader()) {
    counters_[layer].shared_waits.fetch_add(1, std::memory_order_relaxed);
    return call.Wait();
  }
  Result<Decoded> result = Status::Internal("unit read did not run");
  try {
    result = FetchDecodeAndKeep(layer, unit);
  } catch (const std::exception& e) {
    result = Status::Internal(std::string("reading a unit threw: ") + e.what());
  } catch (...) {
    result = Status::Internal("reading a unit threw an exception of unknown type");
  }
  call.Complete(result);
  return result;
}

Result<ContentReader::Decoded> ContentReader::FetchDecodeAndKeep(uint32_t layer, uint32_t unit) {
  const UnitKey key{layer, unit};
  {
    MutexLock lock(&mu_);
    auto hit = lru_index_.find(key);
    if (hit != lru_index_.end()) return hit->second->bytes;
  }
  Result<Decoded> result = FetchAndDecode(layer, unit);
  MutexLock lock(&mu_);
  if (result.ok()) {
    InsertLru(key, *result);
  } else if (failure_logged_.insert(key).second) {
    // Once per unit: a broken unit is read again by every retry of every reader.
    IMGFS_LOG(kError, result.status().ToString());
  }
  return result;
}

Result<ContentReader::Decoded> ContentReader::FetchAndDecode(uint32_t layer, uint32_t unit) {
  const LayerIndex& index = *layers_->layer(layer);
  const Unit& u = index.units[unit];
  const std::string context = "layer " + index.blob_digest + " unit at offset " +
                              std::to_string(u.coff);
  auto fail = [&](const Status& s) -> Result<Decoded> {
    counters_[layer].failures.fetch_add(1, std::memory_order_relaxed);
    return s.WithContext(context);
  };
  if (!cache_) return fail(Status::Internal("content reader has no cache"));
  // Units whose codec may check them (gzip members, zstd frames) are first read trusting the
  // store (docs/cache.md, "Trusting the store") and checked by Decode, as cheaply as they can
  // be; bytes that fail are read once more with the store's full check, which drops and
  // refetches them. Other units are checked by the store as before.
  const bool may_trust = u.codec == UnitCodec::kGzipMember || u.codec == UnitCodec::kZstdFrame;
  Status decode_error;
  for (bool trust : {true, false}) {
    if (trust && !may_trust) continue;
    auto slot = std::make_shared<Decoded>();
    cache::UnitRef ref = MakeUnitRef(layer, unit, slot);
    ref.trust_store = trust;
    Result<std::string> raw = cache_->ReadUnit(ref, source_);
    if (!raw.ok()) return fail(raw.status());
    if (raw->size() != u.clen) {
      return fail(Status::Internal("cache returned " + std::to_string(raw->size()) +
                                   " bytes for a unit of " + std::to_string(u.clen)));
    }
    // Our verify ran (and decoded) unless the store or another fetch of the unit served us.
    if (*slot) return *slot;
    Result<std::string> out = layers_->Decode(layer, unit, std::move(raw).value(), !trust);
    if (out.ok()) {
      counters_[layer].unit_decodes.fetch_add(1, std::memory_order_relaxed);
      return UnitBuffers().Share(std::move(out).value());
    }
    decode_error = out.status();
    if (trust) {
      IMGFS_LOG(kWarning, context << ": stored bytes fail their check (" << decode_error.ToString()
                                  << "); checking them against the image's digests");
    }
  }
  return fail(decode_error);
}

void ContentReader::InsertLru(const UnitKey& key, const Decoded& bytes) {
  // A unit bigger than the whole LRU is used by its readers and dropped. Units count by their
  // size; a pooled buffer holds at most BufferPool::MaxSlack more (base/buffer_pool.h).
  if (bytes->size() > lru_limit_ || lru_index_.count(key)) return;
  lru_.push_front({key, bytes});
  lru_index_[key] = lru_.begin();
  lru_used_ += bytes->size();
  while (lru_used_ > lru_limit_) {
    const LruItem& old = lru_.back();
    lru_used_ -= old.bytes->size();
    lru_index_.erase(old.key);
    lru_.pop_back();
  }
}

std::vector<ContentReader::LayerStats> ContentReader::stats() const {
  std::vector<LayerStats> out(layers_->size());
  for (size_t i = 0; i < layers_->size(); ++i) {
    const Counters& c = counters_[i];
    out[i].blob_digest = layers_->layer(i) ? layers_->layer(i)->blob_digest : std::string();
    out[i].unit_decodes = c.unit_decodes.load(std::memory_order_relaxed);
    out[i].lru_hits = c.lru_hits.load(std::memory_order_relaxed);
    out[i].shared_waits = c.shared_waits.load(std::memory_order_relaxed);
    out[i].failures = c.failures.load(std::memory_order_relaxed);
    out[i].bytes_read = c.bytes_read.load(std::memory_order_relaxed);
    out[i].readahead_units = c.readahead_units.load(std::memory_order_relaxed);
  }
  return out;
}

size_t ContentReader::lru_bytes_used() const {
  MutexLock lock(&mu_);
  return lru_used_;
}

}  // namespace imgfs::fs
