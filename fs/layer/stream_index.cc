#include "fs/layer/stream_index.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "base/digest.h"
#include "base/log.h"
#include "fs/layer/tar.h"

namespace imgfs::fs {
namespace {

constexpr size_t kWindowSize = 32768;
constexpr size_t kOutBufSize = 256 * 1024;
constexpr size_t kDetectBytes = 4;

enum class Mode { kDetect, kRaw, kGzip };

bool StartsWith(std::string_view s, std::initializer_list<uint8_t> magic) {
  if (s.size() < magic.size()) return false;
  size_t i = 0;
  for (uint8_t m : magic) {
    if (static_cast<uint8_t>(s[i++]) != m) return false;
  }
  return true;
}

}  // namespace

struct StreamIndexer::Impl {
  explicit Impl(StreamIndexOptions o)
      : options(o), tar([this](Entry e, uint64_t off) { return OnEntry(std::move(e), off); }) {}
  ~Impl() {
    if (zs_ready) inflateEnd(&zs);
  }

  StreamIndexOptions options;
  Mode mode = Mode::kDetect;
  std::string detect_buf;
  Status error;

  TarReader tar;
  std::vector<Entry> entries;
  std::vector<std::pair<size_t, uint64_t>> files;  // entry index, data offset in the stream

  // Units closed so far, and their uncompressed start offsets.
  std::vector<Unit> units;
  std::vector<uint64_t> unit_uoff;
  // The unit being accumulated.
  bool has_unit = false;
  Unit cur;
  uint64_t cur_uoff = 0;
  std::unique_ptr<Sha256> cur_hash;

  uint64_t coff = 0;       // compressed bytes processed by the codec
  uint64_t total_out = 0;  // uncompressed stream bytes produced
  // The tar archive ended and its last unit is closed: the rest of the stream is only hashed.
  bool trailing = false;
  Sha256 diff_hash;    // of the uncompressed stream (gzip only; raw: the blob digest)
  Status limit_error;  // a limit was passed: the pass stops at once

  // gzip state
  z_stream zs{};
  bool zs_ready = false;
  bool in_member = false;
  bool padding = false;
  uint8_t last_byte = 0;
  uint64_t out_since_checkpoint = 0;
  std::string window;  // the current member's most recent output, at least 32 KiB when known
  std::unique_ptr<uint8_t[]> out_buf;

  Status OnEntry(Entry e, uint64_t data_offset) {
    if (e.type == EntryType::kRegular && e.size > 0) {
      files.emplace_back(entries.size(), data_offset);
    }
    entries.push_back(std::move(e));
    return Status::Ok();
  }

  void OpenUnit(UnitCodec codec, uint64_t at, uint8_t bits, bool member_start) {
    cur = Unit{};
    cur.codec = codec;
    cur.coff = at;
    cur.bits = bits;
    cur.at_member_start = member_start;
    cur_uoff = total_out;
    cur_hash = std::make_unique<Sha256>();
    has_unit = true;
  }

  void CloseUnit() {
    if (!has_unit) return;
    cur.clen = coff - cur.coff;
    cur.ulen = total_out - cur_uoff;
    cur.sha256 = cur_hash->FinishDigest();
    cur_hash.reset();
    units.push_back(std::move(cur));
    unit_uoff.push_back(cur_uoff);
    has_unit = false;
  }

  void HashCompressed(const uint8_t* p, size_t n) {
    if (n == 0) return;
    if (has_unit) cur_hash->Update(p, n);
    last_byte = p[n - 1];
    coff += n;
  }

  Status Output(const uint8_t* p, size_t n) {
    total_out += n;
    out_since_checkpoint += n;
    if (total_out > options.max_inflated) {
      limit_error = Status::Corrupt(
          "the layer inflates to more than " + std::to_string(options.max_inflated) +
          " bytes, the limit for a blob of its size (at most " + std::to_string(kMaxInflateRatio) +
          " times the compressed size beyond " + std::to_string(kInflateRatioFloor >> 30) +
          " GiB, and never more than " + std::to_string(kMaxInflatedLayerBytes >> 30) +
          " GiB): refusing a likely gzip bomb");
      return limit_error;
    }
    if (mode == Mode::kGzip) {
      diff_hash.Update(p, n);
      if (!trailing) {
        window.append(reinterpret_cast<const char*>(p), n);
        if (window.size() > 2 * kWindowSize) window.erase(0, window.size() - kWindowSize);
      }
    }
    if (tar.at_end()) return Status::Ok();
    return tar.Feed(std::string_view(reinterpret_cast<const char*>(p), n));
  }

  Status FeedCodec(std::string_view bytes) {
    if (mode == Mode::kDetect) {
      detect_buf.append(bytes);
      if (detect_buf.size() < kDetectBytes) return Status::Ok();
      IMGFS_RETURN_IF_ERROR(Detect());
      std::string pending = std::move(detect_buf);
      detect_buf.clear();
      return FeedCodec(pending);
    }
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    return mode == Mode::kRaw ? FeedRaw(p, bytes.size()) : FeedGzip(p, bytes.size());
  }

  Status Detect() {
    if (StartsWith(detect_buf, {0x28, 0xb5, 0x2f, 0xfd})) {
      return Status::Unsupported("zstd layers without zstd:chunked TOC are not supported yet");
    }
    if (StartsWith(detect_buf, {0x1f, 0x8b})) {
      mode = Mode::kGzip;
      out_buf.reset(new uint8_t[kOutBufSize]);
      if (inflateInit2(&zs, 15 + 16) != Z_OK) return Status::Internal("inflateInit2 failed");
      zs_ready = true;
    } else {
      mode = Mode::kRaw;
    }
    return Status::Ok();
  }

  Status FeedRaw(const uint8_t* p, size_t n) {
    while (n > 0) {
      if (!has_unit) OpenUnit(UnitCodec::kRaw, coff, 0, false);
      uint64_t in_unit = coff - cur.coff;
      size_t take = static_cast<size_t>(std::min<uint64_t>(n, options.raw_unit - in_unit));
      HashCompressed(p, take);
      IMGFS_RETURN_IF_ERROR(Output(p, take));
      p += take;
      n -= take;
      if (coff - cur.coff == options.raw_unit) CloseUnit();
    }
    return Status::Ok();
  }

  Status GzipError(const char* what) {
    return Status::Corrupt("gzip stream at compressed offset " + std::to_string(coff) + ": " +
                           what);
  }

  // True once the tar archive has ended: closes the last unit, so that no checkpoint (and no
  // window) is spent on what follows the archive.
  bool EndUnitsAfterTar() {
    if (trailing) return true;
    if (!tar.at_end()) return false;
    CloseUnit();
    trailing = true;
    window.clear();
    window.shrink_to_fit();
    return true;
  }

  void StartMember() {
    inflateReset(&zs);
    in_member = true;
    window.clear();
    if (EndUnitsAfterTar()) return;
    if (!has_unit || out_since_checkpoint >= options.min_member_span) {
      CloseUnit();
      OpenUnit(UnitCodec::kZran, coff, 0, /*member_start=*/true);
      out_since_checkpoint = 0;
    }
  }

  void Checkpoint(uint8_t bits) {
    CloseUnit();
    // With a bit offset the checkpoint's first bits sit in the byte just consumed; the new
    // unit's range starts there so that it can be decoded on its own.
    OpenUnit(UnitCodec::kZran, bits ? coff - 1 : coff, bits, false);
    if (bits) cur_hash->Update(&last_byte, 1);
    size_t wlen = std::min(window.size(), kWindowSize);
    cur.window = window.substr(window.size() - wlen);
    out_since_checkpoint = 0;
  }

  Status FeedGzip(const uint8_t* p, size_t n) {
    while (n > 0) {
      if (!in_member) {
        if (padding || p[0] == 0) {
          // Some writers pad the blob with zeros after the last member.
          padding = true;
          for (size_t i = 0; i < n; ++i) {
            if (p[i] != 0) return GzipError("non-zero byte in the padding after the last member");
          }
          HashCompressed(p, n);
          return Status::Ok();
        }
        if (p[0] != 0x1f) {
          return GzipError("bytes after a gzip member are neither a new member nor padding");
        }
        StartMember();
      }
      size_t chunk = std::min<size_t>(n, std::numeric_limits<uInt>::max() / 2);
      zs.next_in = const_cast<Bytef*>(p);
      zs.avail_in = static_cast<uInt>(chunk);
      for (;;) {
        zs.next_out = out_buf.get();
        zs.avail_out = kOutBufSize;
        int rc = inflate(&zs, Z_BLOCK);
        size_t consumed = chunk - zs.avail_in;
        HashCompressed(p, consumed);
        p += consumed;
        n -= consumed;
        chunk -= consumed;
        size_t produced = kOutBufSize - zs.avail_out;
        if (produced) IMGFS_RETURN_IF_ERROR(Output(out_buf.get(), produced));
        if (rc == Z_STREAM_END) {
          in_member = false;
          break;
        }
        if (rc == Z_BUF_ERROR) {
          if (chunk == 0) break;
          return GzipError("inflate made no progress");
        }
        if (rc != Z_OK) return GzipError(zs.msg ? zs.msg : "inflate failed");
        if ((zs.data_type & 128) && !(zs.data_type & 64) && !trailing) {
          // At a block boundary: the first one after the tar's end closes the last unit.
          if (!EndUnitsAfterTar() && out_since_checkpoint >= options.span) {
            Checkpoint(static_cast<uint8_t>(zs.data_type & 7));
          }
        }
        if (chunk == 0 && zs.avail_out != 0) break;
      }
    }
    return Status::Ok();
  }

  // Cuts the stored bytes of a file along the units. A sparse file comes with its layout
  // (tar.h): holes stay, each data region is cut from data_offset + its unit_offset.
  Status MapChunks(Entry* e, uint64_t data_offset) {
    std::vector<Chunk> layout = std::move(e->chunks);
    if (layout.empty()) layout.push_back({0, e->size, 0, 0});
    e->chunks.clear();
    for (const Chunk& region : layout) {
      if (region.unit == Chunk::kZeroUnit) {
        e->chunks.push_back(region);
        continue;
      }
      IMGFS_RETURN_IF_ERROR(
          MapRange(e, region.file_offset, data_offset + region.unit_offset, region.length));
    }
    return Status::Ok();
  }

  Status MapRange(Entry* e, uint64_t file_offset, uint64_t start, uint64_t length) {
    uint64_t end = start + length;
    auto it = std::upper_bound(unit_uoff.begin(), unit_uoff.end(), start);
    if (it == unit_uoff.begin()) return Status::Internal("file data before the first unit");
    size_t u = static_cast<size_t>(it - unit_uoff.begin()) - 1;
    uint64_t pos = start;
    for (; pos < end && u < units.size(); ++u) {
      uint64_t ustart = unit_uoff[u], uend = ustart + units[u].ulen;
      if (uend <= pos) continue;
      uint64_t stop = std::min(end, uend);
      Chunk c;
      c.file_offset = file_offset + (pos - start);
      c.length = stop - pos;
      c.unit = static_cast<uint32_t>(u);
      c.unit_offset = pos - ustart;
      e->chunks.push_back(c);
      pos = stop;
    }
    if (pos != end) return Status::Internal("file data beyond the last unit");
    return Status::Ok();
  }

  Result<LayerIndex> Finish() {
    if (mode == Mode::kDetect) {
      // A blob shorter than the magic: whatever it is, it is not gzip.
      IMGFS_RETURN_IF_ERROR(Detect());
      std::string pending = std::move(detect_buf);
      detect_buf.clear();
      IMGFS_RETURN_IF_ERROR(FeedCodec(pending));
    }
    if (mode == Mode::kGzip && in_member) {
      return Status::Corrupt("gzip stream ends inside a member (truncated blob?)");
    }
    CloseUnit();
    IMGFS_RETURN_IF_ERROR(tar.Finish());
    if (units.size() > Chunk::kZeroUnit) return Status::Unsupported("layer has too many units");
    for (const auto& [entry, data_offset] : files) {
      IMGFS_RETURN_IF_ERROR(MapChunks(&entries[entry], data_offset));
    }
    LayerIndex index;
    index.format = mode == Mode::kGzip ? "gzip" : "tar";
    index.entries = std::move(entries);
    index.units = std::move(units);
    return index;
  }
};

uint64_t InflateLimitFor(uint64_t compressed_size) {
  uint64_t by_ratio = compressed_size > kMaxInflatedLayerBytes / kMaxInflateRatio
                          ? kMaxInflatedLayerBytes
                          : compressed_size * kMaxInflateRatio;
  return std::min(kMaxInflatedLayerBytes, std::max(kInflateRatioFloor, by_ratio));
}

StreamIndexer::StreamIndexer(StreamIndexOptions options) : impl_(std::make_unique<Impl>(options)) {}
StreamIndexer::~StreamIndexer() = default;

Status StreamIndexer::Feed(std::string_view bytes) {
  bytes_seen_ += bytes.size();
  if (impl_->options.blob_digest.empty()) {
    if (!hash_) hash_ = std::make_unique<Sha256>();
    hash_->Update(bytes);
  }
  if (!impl_->error.ok()) return Status::Ok();
  Status s = impl_->FeedCodec(bytes);
  if (!s.ok()) {
    impl_->error = s;
    if (s.code() != Code::kCorrupt || !impl_->limit_error.ok()) return s;
  }
  return Status::Ok();
}

Result<LayerIndex> StreamIndexer::Finish() {
  if (!impl_->options.blob_digest.empty()) {
    blob_digest_ = impl_->options.blob_digest;
  } else {
    if (!hash_) hash_ = std::make_unique<Sha256>();
    blob_digest_ = hash_->FinishDigest();
    hash_.reset();
  }
  if (!impl_->error.ok()) return impl_->error;
  Result<LayerIndex> index = impl_->Finish();
  if (!index.ok()) return index;
  diff_id_ = index->format == "gzip" ? impl_->diff_hash.FinishDigest() : blob_digest_;
  index->blob_digest = blob_digest_;
  index->blob_size = bytes_seen_;
  index->diff_id = diff_id_;
  if (Status s = ValidateLayerIndex(*index); !s.ok()) {
    return Status::Internal("streamed index fails validation: " + s.message());
  }
  return index;
}

namespace {

// The remainder of a resumed blob is fetched in range requests of this size.
constexpr uint64_t kResumeRequestBytes = uint64_t{8} << 20;

// Streams bytes [offset, size) of blob `digest` through `sink`, in range requests.
Status ReadFrom(BlobSource* source, const std::string& digest, uint64_t offset, uint64_t size,
                const std::function<Status(std::string_view)>& sink) {
  std::string bytes;
  while (offset < size) {
    const uint64_t len = std::min(kResumeRequestBytes, size - offset);
    bytes.clear();
    Status s = source->ReadRange(digest, offset, len, &bytes);
    if (s.ok() && bytes.size() != len) {
      s = Status::Unavailable("the registry sent " + std::to_string(bytes.size()) +
                              " bytes instead of " + std::to_string(len));
    }
    if (!s.ok()) return s.WithContext("bytes from " + std::to_string(offset));
    s = sink(bytes);
    if (!s.ok()) return s;
    offset += len;
  }
  return Status::Ok();
}

// One pass over the blob into `writer`, verified, not committed. When the writer adopted the
// bytes of a transfer that died, they are streamed from the cache and only the rest from
// `source`.
Result<LayerIndex> StreamPass(const LayerDescriptor& layer, cache::BlobWriter* writer,
                              BlobSource* source, const StreamIndexOptions& options) {
  const std::string& digest = layer.digest;
  StreamIndexOptions limited = options;
  limited.max_inflated = std::min(options.max_inflated, InflateLimitFor(layer.size));
  // The writer hashes every byte, adopted ones included, and checks them below: the blob is
  // hashed once, not by the indexer too.
  limited.blob_digest = digest;
  StreamIndexer indexer(limited);
  uint64_t seen = 0;
  auto feed = [&](std::string_view bytes) -> Status {
    seen += bytes.size();
    if (seen > layer.size) {
      return Status::Corrupt("layer " + digest + " is larger than the " +
                             std::to_string(layer.size) + " bytes its descriptor says");
    }
    return indexer.Feed(bytes);
  };
  auto feed_and_keep = [&](std::string_view bytes) -> Status {
    Status s = feed(bytes);
    return s.ok() ? writer->Append(bytes) : s;
  };
  Status read;
  if (const uint64_t resumed = writer->resumed_bytes(); resumed > 0) {
    IMGFS_LOG(kInfo, "layer " << digest << ": resuming after the " << resumed
                              << " bytes a transfer that died left in the cache");
    read = writer->ReadResumed(feed);
    if (read.ok()) read = ReadFrom(source, digest, resumed, layer.size, feed_and_keep);
  } else {
    read = source->ReadAll(digest, feed_and_keep);
  }
  if (!read.ok()) return read.WithContext("indexing layer " + digest);
  Result<LayerIndex> index = indexer.Finish();
  if (seen != layer.size) {
    return Status::Corrupt("layer " + digest + " has " + std::to_string(seen) +
                           " bytes but its descriptor says " + std::to_string(layer.size));
  }
  if (Status whole = writer->CheckDigest(); !whole.ok()) {
    if (whole.code() != Code::kDigestMismatch) return whole;
    return Status::DigestMismatch("layer " + digest + " downloaded: " + whole.message() +
                                  "; nothing was kept");
  }
  if (!index.ok()) return index.status().WithContext("layer " + digest);
  if (!layer.diff_id.empty() && indexer.diff_id() != layer.diff_id) {
    return Status::DigestMismatch("layer " + digest + " uncompresses to " + indexer.diff_id() +
                                  " but the image config's diff_id for it is " + layer.diff_id +
                                  "; nothing was kept");
  }
  return index;
}

}  // namespace

Result<LayerIndex> BuildStreamedLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                           BlobSource* source, const StreamIndexOptions& options) {
  const std::string& digest = layer.digest;
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> writer,
                         cache->CreateBlobWriter(digest, layer.size));
  const bool resumed = writer->resumed_bytes() > 0;
  Result<LayerIndex> index = StreamPass(layer, writer.get(), source, options);
  // The adopted bytes were never verified: when the whole does not verify, they may be what
  // is wrong. Once more from the start.
  if (resumed &&
      (index.status().code() == Code::kDigestMismatch || index.status().code() == Code::kCorrupt)) {
    IMGFS_LOG(kWarning, "layer " << digest << ": the resumed transfer does not verify ("
                                 << index.status().message() << "); fetching it whole again");
    Status restart = writer->Restart();
    index = restart.ok() ? StreamPass(layer, writer.get(), source, options) : restart;
  }
  if (!index.ok()) return index.status();
  IMGFS_RETURN_IF_ERROR(writer->Commit());
  if (Status s = cache->PutLayerIndex(digest, index->Serialize()); !s.ok()) {
    // The index is still good for this process; the next mount rebuilds it.
    IMGFS_LOG(kWarning, "could not store the index of layer " << digest << ": " << s.ToString());
  }
  IMGFS_LOG(kInfo, "indexed layer " << digest << " (" << index->format << ", "
                                    << index->entries.size() << " entries, " << index->units.size()
                                    << " units)");
  return index;
}

}  // namespace imgfs::fs
