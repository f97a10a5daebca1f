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
// StreamIndexer is not thread-safe; one per pass. BuildStreamedLayerIndex is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/digest.h"
#include "base/status.h"
#include "cache/blob_source.h"
#include "cache/cache.h"
#include "fs/layer/layer_builder.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

struct StreamIndexOptions {
  uint64_t span = uint64_t{1} << 20;             // output between zran checkpoints
  uint64_t min_member_span = uint64_t{64} << 10;  // see above
  uint64_t raw_unit = uint64_t{1} << 20;         // size of an uncompressed tar's units
};

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

  // Ends the stream. The index carries the digest and size of the bytes fed.
  // The digest is available from blob_digest() even when the index is an error.
  Result<LayerIndex> Finish();

  // REQUIRES: Finish() was called.
  const std::string& blob_digest() const { return blob_digest_; }
  uint64_t bytes_seen() const { return bytes_seen_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Sha256> hash_;
  std::string blob_digest_;
  uint64_t bytes_seen_ = 0;
};

// The whole pass for `layer`: streams the blob from `source` through a StreamIndexer and the
// cache's BlobWriter; then, only when the digest and size match the descriptor
// (kDigestMismatch / kCorrupt otherwise, with nothing committed), commits the blob and stores
// the serialized index in `cache`. REQUIRES: cache and source non-null.
Result<LayerIndex> BuildStreamedLayerIndex(const LayerDescriptor& layer, cache::Cache* cache,
                                           cache::BlobSource* source,
                                           const StreamIndexOptions& options = {});

}  // namespace imgfs::fs
