// Cache: the one on-disk cache of an imgfs user, shared by every mount and pull.
//
// Layout under the root (see docs/cache.md):
//   blobs/sha256/<2 hex>/<64 hex>   sparse blob files; each unit at its real offset, so a
//                                   fully fetched blob is byte-for-byte the registry's blob
//   index/                          LMDB environment with the metadata:
//     refs        reference string -> manifest digest + fetch time
//     docs        digest -> media type + bytes of manifests, indexes and configs
//     layers      blob digest -> serialized fs::LayerIndex (opaque here)
//     units       blob hex + coff -> clen + sha256 of a unit that is present in the blob file
//     blobs       blob hex -> size, "complete" flag, last access time
//
// Contracts:
// - Nothing is visible in the index before its bytes are written and fsync'd; a unit is
//   published only after its bytes verify: they hash to the unit's sha256, or, for a unit
//   without one (eStargz/zstd:chunked chunks, whose trusted digests cover the DECODED bytes),
//   the caller's UnitRef::verify accepts them. A crash leaves at worst unreferenced bytes in a
//   blob file, never a published lie.
// - ReadUnit verifies bytes read back from the store as well (unless the UnitRef trusts the
//   store: then it checks only that they come from the file they were written to and are still
//   published); a unit whose stored bytes do not verify is unpublished and fetched again (the
//   cache heals, it is never poisoned).
// - Concurrent ReadUnit and FetchUnits calls for the same unit within a process are collapsed
//   into one fetch: whoever asks second waits for the first fetch's result.
// - Several processes may use one root at once; LMDB's locking is the only coordination.
//   A Cache must not cross fork(): open it in the process that uses it.
//
// Thread-safety: all methods are safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/blob_source.h"
#include "base/status.h"
#include "cache/decoded_files.h"

namespace imgfs::cache {

class Cache;
class Eviction;
class Verifier;

// A verifiable piece of a blob: the compressed range [coff, coff + clen) must hash to sha256,
// or, when sha256 is empty, be accepted by `verify`.
struct UnitRef {
  std::string blob;  // "sha256:<hex>" of the whole blob
  uint64_t coff = 0;
  uint64_t clen = 0;
  std::string sha256;  // "sha256:<hex>" of the range's bytes, or "" (then `verify` decides)
  // REQUIRES: set when sha256 is empty (else kInvalidArgument). Called with exactly clen bytes
  // fetched or read back from the store; OK means the bytes may be stored and served. Called
  // on the calling thread or, in FetchUnits, on one of its workers (never after the call that
  // was given it returns), at most once per fetch or store read; it must be thread-safe when
  // the same UnitRef is used by several calls at once. Exceptions are caught (kInternal).
  // The braces keep four-value brace initializers free of -Wmissing-field-initializers.
  std::function<Status(std::string_view compressed)> verify{};
  // Whether ReadUnit may serve bytes the store published without hashing or verifying them
  // again: they were verified before they were published (docs/cache.md, "Trusting the
  // store"). The store still checks that they come from the blob file it wrote and that the
  // unit is still published once they are read. A caller that sets it must check what it can
  // (the reader decodes, which checks gzip/zstd framing and CRCs) and read the unit again
  // without it when that fails, which verifies and heals the store. `imgfs cache verify`
  // stays the deep check.
  bool trust_store = false;
};

struct ReferenceRecord {
  std::string manifest_digest;
  int64_t fetched_unix = 0;  // when the registry last confirmed the reference
};

struct Document {
  std::string media_type;
  std::string bytes;
};

// Writes a whole blob into the store as it streams past (the plain gzip/tar indexing pass).
// Bytes are not visible to readers until Commit, which the caller calls only after the whole
// blob digest has been verified. Destroying an uncommitted writer leaves nothing published.
//
// Resuming: a writer that died (a pull or mount killed mid-transfer) leaves its bytes in a
// temporary file. A new writer of the same blob adopts them: resumed_bytes() says how many
// (a prefix of the blob as it was received, NOT verified). The caller then either streams
// them through ReadResumed (to rebuild what it derives from the bytes) and Appends the rest,
// or calls Restart and Appends from the start. Commit checks the whole blob either way.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  // 0 when nothing was adopted (or after Restart).
  virtual uint64_t resumed_bytes() const = 0;
  // Streams the adopted prefix through `sink` in order and counts it as appended; a non-OK
  // Status from `sink` stops it and is returned. REQUIRES: called once, before any Append.
  virtual Status ReadResumed(const std::function<Status(std::string_view)>& sink) = 0;
  // Drops everything written or adopted so far: the next Append is byte 0 of the blob.
  virtual Status Restart() = 0;
  // REQUIRES: resumed_bytes() is 0, or ReadResumed was called, and CheckDigest was not.
  virtual Status Append(std::string_view bytes) = 0;
  // Whether the bytes appended (and adopted) so far hash to the blob's digest: kDigestMismatch
  // naming the digest they hash to; the writer stays usable for Restart. The writer hashes
  // every byte anyway, so a caller that must know before Commit (to Restart instead) asks here
  // rather than hashing the blob a second time; Commit reuses the result.
  virtual Status CheckDigest() = 0;
  // Checks the digest (CheckDigest), fsyncs the file and marks the whole blob present.
  // REQUIRES: all bytes appended.
  virtual Status Commit() = 0;
};

struct BlobStats {
  uint64_t size = 0;           // blob size when known, else 0
  uint64_t bytes_present = 0;  // bytes of published units (size when complete)
  uint64_t units_present = 0;
  bool complete = false;
};

// FetchUnits coalescing: a gap this small between two missing units costs less to fetch and
// drop than a second request's round trip.
inline constexpr uint64_t kCoalesceGapBytes = 64 << 10;
inline constexpr int kFetchParallelism = 4;
// Fetched (compressed) bytes that the fetches of one cache root in one process hold at once:
// a range request waits until its length fits (one larger than this waits to run alone).
// Reads of a whole image otherwise held up to FUSE threads x unit size (16 x 4 MiB) of
// responses plus their decoded copies. 8 requests of read-ahead's 4 MiB; far above a WAN's
// bandwidth-delay product (100 Mbit/s x 20 ms = 250 KB). docs/architecture.md, "Memory of a
// mount".
inline constexpr uint64_t kFetchBudgetBytes = 32 << 20;

// The blobs ("sha256:<hex>") that images in the cache reference (cli/cache_usage.h knows
// images; the cache does not): what a size limit evicts last.
using ReferencedBlobsFn = std::function<Result<std::set<std::string>>(Cache& cache)>;

class Cache {
 public:
  virtual ~Cache() = default;

  // Opens the cache at `root`, creating it (mode 0700) if needed.
  static Result<std::unique_ptr<Cache>> Open(const std::string& root);

  // $IMGFS_CACHE, else /var/lib/imgfs for root, else $XDG_CACHE_HOME/imgfs (~/.cache/imgfs).
  static std::string DefaultRoot();

  virtual const std::string& root() const = 0;

  // --- metadata ---
  // `ref` is the fully qualified reference, e.g. "docker.io/library/alpine:latest".
  virtual Status PutReference(std::string_view ref, std::string_view manifest_digest) = 0;
  virtual Result<ReferenceRecord> GetReference(std::string_view ref) = 0;  // kNotFound
  // Every reference record whose key starts with `prefix`, in key order (damaged ones are
  // skipped). Absent keys are not an error for DeleteReference.
  virtual Result<std::vector<std::pair<std::string, ReferenceRecord>>> ListReferences(
      std::string_view prefix) = 0;
  virtual Status DeleteReference(std::string_view ref) = 0;

  // REQUIRES: the caller verified that `bytes` hash to `digest`.
  virtual Status PutDocument(std::string_view digest, std::string_view media_type,
                             std::string_view bytes) = 0;
  // The document, re-verified against `digest`; kNotFound when absent or found corrupt.
  virtual Result<Document> GetDocument(std::string_view digest) = 0;

  virtual Status PutLayerIndex(std::string_view blob_digest, std::string_view serialized) = 0;
  virtual Result<std::string> GetLayerIndex(std::string_view blob_digest) = 0;  // kNotFound

  // --- content ---
  // The unit's bytes, from the store when present and intact, else fetched from `source`,
  // verified, stored and published. A fetch whose bytes do not verify is retried once; then
  // kDigestMismatch and nothing is stored. `source` may be null (offline): a missing unit is
  // then kUnavailable.
  virtual Result<std::string> ReadUnit(const UnitRef& unit, BlobSource* source) = 0;

  // Makes every unit of `units` present: those not published yet (a cheap index lookup, the
  // stored bytes are not re-read) are fetched from `source` with few range requests. Missing
  // units of one blob, sorted by coff, that are adjacent or separated by gaps of at most
  // kCoalesceGapBytes are fetched as one ReadRange of at most `max_request_bytes` (a unit
  // longer than that gets a request of its own); up to kFetchParallelism requests run at once.
  // Each unit of a response is verified on its own and stored and published when it verifies;
  // one that does not is fetched alone once more and then fails with kDigestMismatch, without
  // costing the other units of the response. Units another ReadUnit/FetchUnits is fetching
  // are not fetched again; this call waits for that fetch. Returns OK when every unit is
  // present, else the first error (the other units are still fetched). `source` may be null:
  // then kUnavailable unless everything is present. Units may belong to several blobs.
  virtual Status FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                            uint64_t max_request_bytes) = 0;

  // Publishes a unit whose bytes the caller already holds. Verifies them first.
  virtual Status PutUnit(const UnitRef& unit, std::string_view bytes) = 0;

  // Whether the index says the unit of `blob` at `coff`, `clen` bytes long, is present: it was
  // published with that length, or the whole blob is. A presence question (imgfs stats,
  // prefetch planning): the bytes are not re-read or verified, so no digest or verifier is
  // needed; a later ReadUnit verifies them as always.
  virtual bool HasUnit(std::string_view blob, uint64_t coff, uint64_t clen) = 0;

  // --- decoded files (cache/decoded_files.h: whole files of a layer for FUSE passthrough) ---
  // A read-only descriptor (the caller closes it) of the decoded file at `path` of layer
  // `blob_digest` holding `size` bytes; kNotFound when there is none.
  virtual Result<int> OpenDecodedFile(std::string_view blob_digest, std::string_view path,
                                      uint64_t size) = 0;
  // Writes it from what `fill` feeds and counts it against the size limit as published units
  // are. Under a size limit it must fit without evicting anything but other decoded files
  // (of blobs no live process pins): when it does not, nothing is written and the answer is
  // false. REQUIRES: every byte `fill` feeds was verified.
  virtual Result<bool> PutDecodedFile(std::string_view blob_digest, std::string_view path,
                                      uint64_t size, const DecodedFiles::Fill& fill) = 0;

  // Range requests to a BlobSource in flight now from this process's Cache objects on this
  // root (ReadUnit and FetchUnits). Background fetchers pause while others are in flight.
  virtual int FetchesInFlight() = 0;

  // Starts writing blob `blob_digest` of `size` bytes as a whole (see BlobWriter).
  virtual Result<std::unique_ptr<BlobWriter>> CreateBlobWriter(std::string_view blob_digest,
                                                               uint64_t size) = 0;

  virtual BlobStats GetBlobStats(std::string_view blob_digest) = 0;

  // What the store holds and how to give space back (cache/eviction.h).
  virtual Eviction& eviction() = 0;

  // Re-checks everything stored and drops what fails (`imgfs cache verify`; cache/verify.h).
  virtual Verifier& verifier() = 0;

  // Keeps the disk bytes of the blob files near `max_bytes` (0: no limit) while this process
  // writes the cache, by the policy of cache/gc.h, throttled as cache/auto_gc.h says.
  // `referenced` is called with a Cache on the same root during a pass. The limit belongs to
  // the root in this process: every Cache opened on it shares the last one set.
  virtual void SetSizeLimit(uint64_t max_bytes, ReferencedBlobsFn referenced) = 0;
};

}  // namespace imgfs::cache
