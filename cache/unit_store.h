// UnitStore: the storage half of the content store (cvmfs's cache manager to the Fetcher's
// download manager). It knows blob files, the `units` and `blobs` records, and when a unit's
// bytes may be served; it never talks to a BlobSource (cache/fetcher.h does).
//
// Write order (docs/cache.md, "Guarantees"): a unit's bytes are pwritten and fdatasync'd
// before its `units` record is committed; a whole blob is fsync'd and renamed into place before
// its `blobs` record says complete. A unit whose stored bytes do not verify is unpublished
// (and its blob loses the complete flag) so that it is fetched again.
//
// Thread-safety: all methods may be called from many threads at once. `env` is borrowed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/mutex.h"
#include "base/status.h"
#include "cache/blob_files.h"
#include "cache/cache.h"
#include "cache/lmdb_env.h"
#include "cache/records.h"

namespace imgfs::cache {

class UnitStore {
 public:
  UnitStore(LmdbEnv* env, std::string root);

  const std::string& root() const { return root_; }
  LmdbEnv& env() { return *env_; }
  BlobFiles& files() { return files_; }

  // Whether the index says the unit's bytes are in the blob file (a unit of a complete blob,
  // or one with a matching `units` record). REQUIRES: CheckUnit(unit) is OK.
  Result<bool> IsPublished(const UnitRef& unit);
  // IsPublished of the range [coff, coff + clen) of `blob`; with `unit` given, its record must
  // also carry the unit's digest, else only its length must match.
  Result<bool> IsPublished(std::string_view blob, uint64_t coff, uint64_t clen,
                           const UnitRef* unit);
  // The unit's verified bytes from the store, or nullopt when they are not there. Stored bytes
  // that do not verify are unpublished first. With unit.trust_store, published bytes are
  // served without being verified again when they were read through a descriptor of the file
  // now at the blob's path and the unit is still published after the read (else they are
  // verified as always). REQUIRES: CheckUnit(unit) is OK.
  Result<std::optional<std::string>> ReadStored(const UnitRef& unit);
  // Writes verified `bytes` of `unit` (pwrite + fdatasync) and publishes them.
  // REQUIRES: the bytes verified against the unit.
  Status Store(const UnitRef& unit, std::string_view bytes);
  // Removes the unit's `units` record (if it still describes `unit`) and the blob's complete
  // flag.
  Status Unpublish(const UnitRef& unit);
  // Records the blob's access time, at most once per kAccessInterval per blob and process.
  void TouchBlob(std::string_view hex) EXCLUDES(access_mu_);

  // `hook` is called with the byte count after every unit is published and every whole blob
  // committed, on the writing thread (the automatic size limit, cache/auto_gc.h).
  // REQUIRES: called before the store is used by more than one thread.
  void SetWrittenHook(std::function<void(uint64_t bytes)> hook) { written_hook_ = std::move(hook); }
  void NoteWritten(uint64_t bytes) {
    if (written_hook_) written_hook_(bytes);
  }

  // Starts writing a whole blob; `keep_alive` is held by the writer (the store must outlive
  // it).
  Result<std::unique_ptr<BlobWriter>> CreateBlobWriter(std::string_view blob_digest, uint64_t size,
                                                       std::shared_ptr<const void> keep_alive);

 private:
  std::string Prefix() const { return "cache " + root_ + ": "; }
  // Whether `file` is the file at the blob's path now (a committed BlobWriter renames a new
  // file over it; a descriptor opened before reads the old one, whose holes are not units).
  bool IsBlobFile(const BlobFd& file, std::string_view hex) const;
  void NoteAccessWritten(std::string_view hex) EXCLUDES(access_mu_);

  // Constant after construction.
  LmdbEnv* const env_;
  const std::string root_;

  BlobFiles files_;                             // thread-safe itself
  std::function<void(uint64_t)> written_hook_;  // set before the store is shared

  // State below is protected by access_mu_.
  Mutex access_mu_;
  // When this process last wrote each blob's access time.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> access_written_
      GUARDED_BY(access_mu_);
};

// Updates the `blobs` record of `hex` in `txn`: `fn` edits the decoded record (a fresh one when
// absent), which is then written back.
Status UpdateBlobRecord(LmdbTxn& txn, std::string_view hex,
                        const std::function<void(BlobRecord*)>& fn);

}  // namespace imgfs::cache
