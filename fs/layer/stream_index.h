// The streaming indexing pass for layers without a TOC: plain gzip and uncompressed tar.
//
// One pass over the blob does everything at once, with bounded memory (the blob is never held):
//   - sha256 of the whole compressed stream (the caller compares it with the descriptor),
//   - inflate (gzip; continues across concatenated members and accepts zero padding after the
//     last one) or pass-through (uncompressed tar, detected by the absence of gzip magic),
//   - the tar walk (fs/layer/tar.h) that yields the entries,
//   - the fetch units: for gzip, zran checkpoints (zlib's examples/zran.c: at deflate block
//     boundaries, with the bit offset and the 32 KiB window before the point) about every
//     `span` bytes of output, and at gzip member starts (which need no window) once at least
//     `min_member_span` bytes were output since the last checkpoint; for tar, `raw_unit`-sized
//     slices of the blob. Each unit carries the sha256 of its compressed range; when a
//     checkpoint has a bit offset, its range starts at the byte that holds those bits, so
//     neighbouring ranges may share that one byte.
//   - each regular file's chunks: its data range in the layer stream cut along the units.
//
// Format decisions: the blob's magic wins over the media type (some registries mislabel);
// zstd magic gives kUnsupported (plain zstd layers need the decoded stream kept; not yet).
//
// Memory does not grow with the inflated size beyond the index itself: the tar walk and the
// codec use fixed buffers, and once the tar archive has ended (its two zero blocks) no more
// checkpoints are made, so what follows (padding, or the rest of a gzip bomb) is inflated only
// to be hashed and counted. The index holds one 32 KiB window per checkpoint, i.e. at most
// 32 KiB per `span` of tar data. The inflated stream is limited (StreamIndexOptions::
// max_inflated, InflateLimitFor): beyond it the pass stops at once with kCorrupt naming the
// limit, before the rest of the blob is read.
//
// StreamIndexer is not thread-safe; one per pass. BuildStreamedLayerIndex is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/blob_source.h"
#include "base/digest.h"
#include "base/status.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

struct StreamIndexOptions {
  uint64_t span = uint64_t{1} << 20;              // output between zran checkpoints
  uint64_t min_member_span = uint64_t{64} << 10;  // see above
  uint64_t raw_unit = uint64_t{1} << 20;          // size of an uncompressed tar's units
  // The most bytes the layer may inflate to (the whole stream, tar end and padding included).
  uint64_t max_inflated = uint64_t{1} << 40;
  // The blob's digest, when whoever feeds the indexer hashes the blob itself (the cache's
  // BlobWriter does, for its Commit): the index records it and the indexer does not hash the
  // blob a second time; blob_digest() is then this value. "": the indexer hashes what it is fed.
  std::string blob_digest;
};

// Limits on the inflated size of one layer (see docs/architecture.md, "Limits on outside
// data"). Real layers stay far below both; a gzip bomb (deflate reaches 1032:1) hits them.
inline constexpr uint64_t kMaxInflatedLayerBytes = uint64_t{64} << 30;  // 64 GiB
inline constexpr uint64_t kMaxInflateRatio = 100;
// Below this much output the ratio is not checked: small layers of zeros are harmless.
inline constexpr uint64_t kInflateRatioFloor = uint64_t{1} << 30;  // 1 GiB

// The inflated-size limit for a layer blob of `compressed_size` bytes:
// min(kMaxInflatedLayerBytes, max(kInflateRatioFloor, kMaxInflateRatio * compressed_size)).
uint64_t InflateLimitFor(uint64_t compressed_size);

class StreamIndexer {
 public:
  explicit StreamIndexer(StreamIndexOptions options = {});
  ~StreamIndexer();
  StreamIndexer(const StreamIndexer&) = delete;
  StreamIndexer& operator=(const StreamIndexer&) = delete;

  // Consumes the next bytes of the blob. Malformed data (kCorrupt) is remembered and reported
  // by Finish, while later bytes are still hashed: the caller can then tell a damaged download
  // (digest mismatch) from a damaged blob. Other errors (kUnsupported) are returned at once.
  Status Feed(std::string_view bytes);

  // Ends the stream. The index carries the digest (see StreamIndexOptions::blob_digest) and
  // size of the bytes fed. The digest is available from blob_digest() even when the index is an
  // error.
  Result<LayerIndex> Finish();

  // REQUIRES: Finish() was called.
  const std::string& blob_digest() const { return blob_digest_; }
  // The sha256 of the whole uncompressed stream (the layer's diff_id), "" when the pass
  // stopped before the end of the stream (an error). REQUIRES: Finish() was called.
  const std::string& diff_id() const { return diff_id_; }
  uint64_t bytes_seen() const { return bytes_seen_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Sha256> hash_;
  std::string blob_digest_;
  std::string diff_id_;
  uint64_t bytes_seen_ = 0;
};

// The whole pass for `layer`: streams the blob from `source` through a StreamIndexer and the
// cache's BlobWriter (which alone hashes the blob); then, only when the digest and size match
// the descriptor
// (kDigestMismatch / kCorrupt otherwise, with nothing committed) and, when the descriptor
// carries a diff_id, the uncompressed stream hashes to it (kDigestMismatch naming the layer),
// commits the blob and stores the serialized index in `cache`. The inflated size is limited to
// InflateLimitFor(layer.size) unless `options` asks for less. REQUIRES: cache and source
// non-null.
//
// Resuming: when the cache's BlobWriter adopted the bytes of a transfer of this blob that died
// (a killed pull or mount), they are read back from the cache through the indexer and only
// the rest is fetched, in range requests. Those bytes were never verified: when the whole
// does not verify (kDigestMismatch, kCorrupt), the pass runs once more from the start.
Result<LayerIndex> BuildStreamedLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                           BlobSource* source,
                                           const StreamIndexOptions& options = {});

}  // namespace imgfs::fs
