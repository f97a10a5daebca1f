// LmdbEnv and LmdbTxn: the LMDB environment under <cache root>/index, its named databases,
// and typed transactions that survive a full or resized map. This file and lmdb_env.cc are the
// only code that sees LMDB's own types and return codes.
//
// What it adds to raw LMDB:
// - Typed operations (Get/Put/Delete/Scan on a Db) that return Status; every LMDB error is
//   kIoError "cache <root>: <what>: <mdb_strerror>", so a user sees which cache failed and why.
// - RAII: a transaction is aborted unless its body returned OK (and, for a write, it
//   committed), including when the body throws: the writer lock is never left held.
// - MDB_MAP_FULL grows the map (doubling) and reruns the transaction; MDB_MAP_RESIZED (another
//   process grew it) adopts the new size and reruns. mdb_env_set_mapsize needs no transaction
//   of this process to be open, so every transaction holds `resize_mu_` shared and a resize
//   holds it exclusive. A body may therefore run more than once: it must only touch the
//   transaction and its own captures, and reset what it collects when it starts.
// - The env is opened with MDB_NOTLS: a read transaction is not bound to a thread, so many
//   threads (FUSE workers) can read at once without the one-reader-per-thread limit.
//
// LMDB forbids opening one environment twice in one process (closing the second one drops
// the first one's POSIX locks, and the second open would re-initialise the shared lock table),
// so Cache shares one LmdbEnv per root and process (see cache.cc). An LmdbEnv must not be used
// across fork(): a child opens its own.
//
// Thread-safety: Read and Write may be called from many threads at once; an LmdbTxn belongs to
// the body it was given to. Owns the MDB_env and closes it in the destructor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/mutex.h"
#include "base/status.h"

struct MDB_env;
struct MDB_txn;

namespace imgfs::cache {

class LmdbEnv;

// The named databases of the cache, in the order of kDbNames in lmdb_env.cc.
enum class Db { kRefs = 0, kDocs, kLayers, kUnits, kBlobs };
inline constexpr int kDbCount = 5;

// One transaction, handed to a Read or Write body.
class LmdbTxn {
 public:
  LmdbTxn(const LmdbTxn&) = delete;
  LmdbTxn& operator=(const LmdbTxn&) = delete;

  // Copies the value of `key` into `*value`. kNotFound (with an empty message, for the caller
  // to replace) when absent.
  Status Get(Db db, std::string_view key, std::string* value);
  // Calls `fn` with the value of `key` as LMDB holds it (a view valid during the call only),
  // for a caller that checks or takes part of a large value without copying it whole.
  // kNotFound as Get.
  Status Visit(Db db, std::string_view key, const std::function<void(std::string_view)>& fn);
  // REQUIRES: a Write transaction.
  Status Put(Db db, std::string_view key, std::string_view value);
  // Deletes `key`; absence is success. REQUIRES: a Write transaction.
  Status Delete(Db db, std::string_view key);
  // Calls `fn(key, value)` for the records whose key is >= `from`, in key order, until `fn`
  // returns false or the records end. The views are valid during the call only.
  Status Scan(Db db, std::string_view from,
              const std::function<bool(std::string_view key, std::string_view value)>& fn);

 private:
  friend class LmdbEnv;
  LmdbTxn(LmdbEnv* env, MDB_txn* txn, bool write) : env_(env), txn_(txn), write_(write) {}
  ~LmdbTxn();  // aborts unless committed
  // Commits a write, ends a read.
  Status Finish();
  // Status of LMDB return code `rc` for operation `what`; the first failure is kept in rc_.
  Status Check(int rc, std::string_view what);

  LmdbEnv* const env_;
  MDB_txn* txn_;  // null once committed or aborted
  const bool write_;
  int rc_ = 0;  // the first LMDB failure of this transaction (MDB_SUCCESS when none)
};

class LmdbEnv {
 public:
  static constexpr uint64_t kDefaultMapSize = uint64_t{8} << 30;  // address space, not disk

  // Opens (creating if needed) the environment in directory `dir`, which must exist.
  // `label` names the cache in error messages (the cache root).
  static Result<std::unique_ptr<LmdbEnv>> Open(const std::string& dir, const std::string& label,
                                               uint64_t map_size = kDefaultMapSize);
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  // Runs `body` in a transaction. OK from the body commits (Write) or ends (Read) it; any other
  // Status aborts it and is returned as is (kNotFound from Get included). A body whose
  // operations hit a full or resized map is rerun after the map is grown or adopted.
  using Body = std::function<Status(LmdbTxn&)>;
  Status Read(const Body& body) EXCLUDES(resize_mu_);
  Status Write(const Body& body) EXCLUDES(resize_mu_);

  uint64_t map_size() const;
  const std::string& label() const { return label_; }
  // The largest key LMDB accepts (511 bytes with the default build).
  size_t max_key_size() const { return max_key_size_; }

 private:
  friend class LmdbTxn;
  LmdbEnv(MDB_env* env, std::string label) : env_(env), label_(std::move(label)) {}
  Status Run(bool write, const Body& body) EXCLUDES(resize_mu_);
  // Doubles the map unless it already grew past `size_seen` (or, when `adopt_only`, adopts the
  // size another process set). Called with no transaction of this object open.
  Status Resize(bool adopt_only, uint64_t size_seen) EXCLUDES(resize_mu_);
  // kIoError "cache <label>: <what>: <mdb_strerror(rc)>".
  Status Error(std::string_view what, int rc) const;

  // Constant after construction.
  MDB_env* const env_;
  const std::string label_;
  unsigned dbis_[kDbCount] = {};  // MDB_dbi of each Db
  size_t max_key_size_ = 511;

  // Shared by every transaction, exclusive while the map is resized.
  SharedMutex resize_mu_;
};

}  // namespace imgfs::cache
