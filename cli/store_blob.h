// The `blob` file of a layer `imgfs store` serves (fs/fuse/store_fs.h): the compressed layer,
// read by range, where every byte returned was verified against a digest the image carries.
//
// The layer index's units with a sha256 of their compressed bytes (plain gzip and tar layers,
// whose index was derived from a whole blob verified against the manifest digest) already
// satisfy that. Nothing else does: the TOC and footer of eStargz and zstd:chunked, the tar
// headers between zstd:chunked's file frames, a gzip trailer, and the compressed bytes of TOC
// units (their TOC digests cover decoded chunks, not the gzip headers or zstd frame headers
// around them). So the first read makes the whole blob verified: the cache's complete copy is
// re-hashed, or the blob is fetched whole, checked against the manifest digest and committed to
// the cache (cache::BlobWriter). That pass also records a sha256 for every range of a cover of
// the blob (the index's units, and pieces of at most kPieceBytes between them); each read is
// then a cache::Cache::ReadUnit of the ranges it touches, checked against those digests, so a
// blob evicted later is fetched again by range and still verified. A pass that fails (a
// registry sending other bytes) fails the read with kDigestMismatch (EIO) and is retried by
// the next read. Only `podman push`/`save` read `blob`; running a container reads `diff/`,
// which stays lazy.
//
// Thread-safety: Read may be called from many threads at once; the pass runs once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/blob_source.h"
#include "base/mutex.h"
#include "base/status.h"
#include "base/thread_annotations.h"
#include "cache/cache.h"
#include "fs/layer/layer_index.h"

namespace imgfs::cli {

class VerifiedBlob {
 public:
  // Gaps between units are covered by ranges of at most this many bytes.
  static constexpr uint64_t kPieceBytes = uint64_t{1} << 20;

  // `units` are the layer index's (any order). `cache` and `source` must outlive this.
  VerifiedBlob(std::string digest, uint64_t size, const std::vector<fs::Unit>& units,
               cache::Cache* cache, BlobSource* source);

  // Copies up to `len` bytes at `offset` into `out` (fewer only at the blob's end).
  Result<size_t> Read(uint64_t offset, size_t len, char* out) EXCLUDES(mu_);

 private:
  struct Span {
    uint64_t coff = 0;
    uint64_t clen = 0;
    std::string sha256;  // "" until the pass filled it in
  };

  // Fills every span's sha256 from the whole blob, verified; once.
  Status Prepare() EXCLUDES(mu_);
  // One pass over the whole blob (the cache's complete copy when `allow_cached` and there is
  // one; *from_cache says whether it was used) that fills in the digests of `spans` and checks
  // the whole against `digest_`.
  Status HashWhole(bool allow_cached, std::vector<Span>* spans, bool* from_cache);
  // The cache's complete copy through `sink`, unverified (HashWhole verifies it).
  Status StreamCached(const std::function<void(std::string_view)>& sink);
  // The registry's blob through `sink`, written into the cache as it streams and committed
  // once it checks against `digest_`.
  Status FetchWhole(const std::function<void(std::string_view)>& sink);
  Result<std::shared_ptr<const std::string>> ReadSpan(size_t i) EXCLUDES(mu_);

  const std::string digest_;
  const uint64_t size_;
  cache::Cache* const cache_;
  BlobSource* const source_;

  Mutex prepare_mu_;  // held by the one pass running
  Mutex mu_;
  std::vector<Span> spans_ GUARDED_BY(mu_);  // sorted by coff, covering [0, size_)
  bool prepared_ GUARDED_BY(mu_) = false;
  // The last span read, for the sequential reads of a push (FUSE reads 128 KiB at a time).
  size_t last_span_ GUARDED_BY(mu_) = SIZE_MAX;
  std::shared_ptr<const std::string> last_bytes_ GUARDED_BY(mu_);
};

}  // namespace imgfs::cli
