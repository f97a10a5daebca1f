#include "fs/tree/content_reader.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <optional>

#include "base/log.h"
#include "fs/layer/decode.h"

namespace imgfs::fs {

// One fetch + decode of a unit that other readers of the same unit wait for.
struct ContentReader::Flight {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<Result<Decoded>> result;  // GUARDED_BY(mu); set once
};

ContentReader::ContentReader(std::vector<std::shared_ptr<const LayerIndex>> layers,
                             cache::Cache* cache, cache::BlobSource* source, size_t lru_bytes)
    : layers_(std::move(layers)),
      cache_(cache),
      source_(source),
      lru_limit_(lru_bytes),
      counters_(new Counters[layers_.size()]) {}

ContentReader::~ContentReader() = default;

Result<size_t> ContentReader::Read(const FileSource& file, uint64_t offset, size_t len,
                                   char* out) {
  if (file.layer >= layers_.size() || !layers_[file.layer] ||
      file.entry >= layers_[file.layer]->entries.size()) {
    return Status::InvalidArgument("read of a file that is not in the image's layers");
  }
  const LayerIndex& layer = *layers_[file.layer];
  const Entry& entry = layer.entries[file.entry];
  if (entry.type != EntryType::kRegular) {
    return Status::InvalidArgument("read of \"" + entry.path + "\", which is not a regular file");
  }
  if (offset >= entry.size || len == 0) return size_t{0};
  const uint64_t end = offset + std::min<uint64_t>(len, entry.size - offset);
  auto corrupt = [&](const char* what) {
    return Status::Corrupt("layer " + layer.blob_digest + ": file \"" + entry.path + "\" " +
                           what);
  };

  const std::vector<Chunk>& chunks = entry.chunks;
  auto it = std::upper_bound(chunks.begin(), chunks.end(), offset,
                             [](uint64_t off, const Chunk& c) { return off < c.file_offset; });
  if (it != chunks.begin()) --it;
  uint64_t pos = offset;
  for (; pos < end && it != chunks.end(); ++it) {
    const Chunk& c = *it;
    if (c.file_offset > pos) return corrupt("has a hole its chunks do not cover");
    if (c.length > UINT64_MAX - c.file_offset) return corrupt("has a chunk past 2^64");
    const uint64_t chunk_end = c.file_offset + c.length;
    if (chunk_end <= pos) continue;
    const uint64_t take = std::min(end, chunk_end) - pos;
    const uint64_t within = pos - c.file_offset;
    char* dst = out + (pos - offset);
    if (c.unit == Chunk::kZeroUnit) {
      std::memset(dst, 0, take);
    } else {
      if (c.unit >= layer.units.size()) return corrupt("names a unit the layer does not have");
      IMGFS_ASSIGN_OR_RETURN(Decoded bytes, GetUnit(file.layer, c.unit));
      if (c.unit_offset > bytes->size() || within + take > bytes->size() - c.unit_offset) {
        return corrupt("has a chunk past the end of its unit");
      }
      std::memcpy(dst, bytes->data() + c.unit_offset + within, take);
    }
    pos += take;
  }
  if (pos < end) return corrupt("is longer than its chunks");
  counters_[file.layer].bytes_read.fetch_add(end - offset, std::memory_order_relaxed);
  return static_cast<size_t>(end - offset);
}

Result<ContentReader::Decoded> ContentReader::GetUnit(uint32_t layer, uint32_t unit) {
  const UnitKey key{layer, unit};
  std::shared_ptr<Flight> flight;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto hit = lru_index_.find(key);
    if (hit != lru_index_.end()) {
      lru_.splice(lru_.begin(), lru_, hit->second);
      counters_[layer].lru_hits.fetch_add(1, std::memory_order_relaxed);
      return hit->second->bytes;
    }
    auto& slot = in_flight_[key];
    if (!slot) {
      slot = std::make_shared<Flight>();
      leader = true;
    } else {
      counters_[layer].shared_waits.fetch_add(1, std::memory_order_relaxed);
    }
    flight = slot;
  }
  if (!leader) {
    std::unique_lock<std::mutex> lock(flight->mu);
    flight->cv.wait(lock, [&] { return flight->result.has_value(); });
    return *flight->result;
  }

  Result<Decoded> result = FetchAndDecode(layer, unit);
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(key);
    if (result.ok()) {
      InsertLru(key, *result);
    } else if (failure_logged_.insert(key).second) {
      // Once per unit: a broken unit is read again by every retry of every reader.
      IMGFS_LOG(kError, result.status().ToString());
    }
  }
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    flight->result = result;
  }
  flight->cv.notify_all();
  return result;
}

Result<ContentReader::Decoded> ContentReader::FetchAndDecode(uint32_t layer, uint32_t unit) {
  const LayerIndex& index = *layers_[layer];
  const Unit& u = index.units[unit];
  const std::string context =
      "layer " + index.blob_digest + " unit at offset " + std::to_string(u.coff);
  auto fail = [&](const Status& s) -> Result<Decoded> {
    counters_[layer].failures.fetch_add(1, std::memory_order_relaxed);
    return s.WithContext(context);
  };
  if (!cache_) return fail(Status::Internal("content reader has no cache"));
  Result<std::string> raw =
      cache_->ReadUnit(cache::UnitRef{index.blob_digest, u.coff, u.clen, u.sha256}, source_);
  if (!raw.ok()) return fail(raw.status());
  if (raw->size() != u.clen) {
    return fail(Status::Internal("cache returned " + std::to_string(raw->size()) +
                                 " bytes for a unit of " + std::to_string(u.clen)));
  }
  Decoded decoded;
  if (u.codec == UnitCodec::kRaw) {
    // Decoding a raw unit is a copy; skip it (units can be MiBs).
    if (u.ulen != u.clen) return fail(Status::Corrupt("raw unit with ulen != clen"));
    decoded = std::make_shared<const std::string>(std::move(raw).value());
  } else {
    Result<std::string> out = DecodeUnit(u, *raw);
    if (!out.ok()) return fail(out.status());
    decoded = std::make_shared<const std::string>(std::move(out).value());
  }
  counters_[layer].unit_decodes.fetch_add(1, std::memory_order_relaxed);
  return decoded;
}

void ContentReader::InsertLru(const UnitKey& key, const Decoded& bytes) {
  // A unit bigger than the whole LRU is used by its readers and dropped.
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
  std::vector<LayerStats> out(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Counters& c = counters_[i];
    out[i].blob_digest = layers_[i] ? layers_[i]->blob_digest : std::string();
    out[i].unit_decodes = c.unit_decodes.load(std::memory_order_relaxed);
    out[i].lru_hits = c.lru_hits.load(std::memory_order_relaxed);
    out[i].shared_waits = c.shared_waits.load(std::memory_order_relaxed);
    out[i].failures = c.failures.load(std::memory_order_relaxed);
    out[i].bytes_read = c.bytes_read.load(std::memory_order_relaxed);
  }
  return out;
}

size_t ContentReader::lru_bytes_used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_used_;
}

}  // namespace imgfs::fs
