// LmdbEnv: the LMDB environment under <cache root>/index, with the named databases of the
// cache and transactions that survive a full or resized map.
//
// What it adds to raw LMDB:
// - Every LMDB error becomes kIoError "cache <root>: <what>: <mdb_strerror>", so a user sees
//   which cache failed and why.
// - MDB_MAP_FULL grows the map (doubling) and reruns the transaction; MDB_MAP_RESIZED (another
//   process grew it) adopts the new size and reruns. mdb_env_set_mapsize needs no transaction
//   of this process to be open, so every transaction holds `resize_mu_` shared and a resize
//   holds it exclusive. The functions passed to Read/Write may therefore run more than once:
//   they must only touch the transaction and their own captures.
// - The env is opened with MDB_NOTLS: a read transaction is not bound to a thread, so many
//   threads (FUSE workers) can read at once without the one-reader-per-thread limit.
//
// LMDB forbids opening one environment twice in one process (closing the second one drops
// the first one's POSIX locks, and the second open would re-initialise the shared lock table),
// so Cache shares one LmdbEnv per root and process (see cache.cc). An LmdbEnv must not be used
// across fork(): a child opens its own.
//
// Thread-safety: Read and Write may be called from many threads at once. Owns the MDB_env and
// closes it in the destructor.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::cache {

class LmdbEnv {
 public:
  // The named databases of the cache, in the order of kDbNames in lmdb_env.cc.
  enum Db { kRefs = 0, kDocs, kLayers, kUnits, kBlobs, kDbCount };

  static constexpr uint64_t kDefaultMapSize = uint64_t{8} << 30;  // address space, not disk

  // Opens (creating if needed) the environment in directory `dir`, which must exist.
  // `label` names the cache in error messages (the cache root).
  static Result<std::unique_ptr<LmdbEnv>> Open(const std::string& dir, const std::string& label,
                                               uint64_t map_size = kDefaultMapSize);
  ~LmdbEnv();
  LmdbEnv(const LmdbEnv&) = delete;
  LmdbEnv& operator=(const LmdbEnv&) = delete;

  // A transaction body returns an LMDB return code: MDB_SUCCESS commits (Write) or ends (Read);
  // MDB_NOTFOUND ends the transaction (aborting a write) and Read/Write return kNotFound with
  // an empty message for the caller to replace; MDB_MAP_FULL grows the map and reruns the
  // body; anything else aborts and becomes kIoError.
  using Body = std::function<int(MDB_txn*)>;
  Status Read(const Body& body);
  Status Write(const Body& body);

  MDB_dbi dbi(Db db) const { return dbis_[db]; }
  uint64_t map_size() const;
  const std::string& label() const { return label_; }
  // The largest key LMDB accepts (511 bytes with the default build).
  size_t max_key_size() const { return max_key_size_; }

  // kIoError "cache <label>: <what>: <mdb_strerror(rc)>".
  Status Error(std::string_view what, int rc) const;

 private:
  LmdbEnv(MDB_env* env, std::string label) : env_(env), label_(std::move(label)) {}
  Status Run(bool write, const Body& body);
  // Doubles the map unless it already grew past `size_seen` (or, when `adopt_only`, adopts the
  // size another process set). Called with no transaction of this object open.
  Status Resize(bool adopt_only, uint64_t size_seen);

  MDB_env* env_;
  std::string label_;
  MDB_dbi dbis_[kDbCount] = {};
  size_t max_key_size_ = 511;
  // Shared by every transaction, exclusive while the map is resized.
  std::shared_mutex resize_mu_;
};

// MDB_val views of bytes, and back.
inline MDB_val MdbVal(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view MdbView(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

}  // namespace imgfs::cache
