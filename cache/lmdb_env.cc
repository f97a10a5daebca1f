#include "cache/lmdb_env.h"

#include <mutex>

#include "base/log.h"

namespace imgfs::cache {
namespace {

constexpr const char* kDbNames[LmdbEnv::kDbCount] = {"refs", "docs", "layers", "units", "blobs"};

// Enough for many mounts with many FUSE threads each; every concurrent read transaction holds
// a slot (MDB_NOTLS), and the default of 126 runs out on a busy shared host.
constexpr unsigned kMaxReaders = 1024;

// A run that keeps hitting MAP_FULL after this many doublings has a bug, not a small map.
constexpr int kMaxAttempts = 16;

}  // namespace

Status LmdbEnv::Error(std::string_view what, int rc) const {
  return Status::IoError("cache " + label_ + ": " + std::string(what) + ": " + mdb_strerror(rc));
}

Result<std::unique_ptr<LmdbEnv>> LmdbEnv::Open(const std::string& dir, const std::string& label,
                                               uint64_t map_size) {
  MDB_env* raw = nullptr;
  int rc = mdb_env_create(&raw);
  if (rc != MDB_SUCCESS) {
    return Status::IoError("cache " + label + ": mdb_env_create: " + mdb_strerror(rc));
  }
  std::unique_ptr<LmdbEnv> env(new LmdbEnv(raw, label));
  if ((rc = mdb_env_set_maxdbs(raw, kDbCount)) != MDB_SUCCESS) {
    return env->Error("mdb_env_set_maxdbs", rc);
  }
  if ((rc = mdb_env_set_maxreaders(raw, kMaxReaders)) != MDB_SUCCESS) {
    return env->Error("mdb_env_set_maxreaders", rc);
  }
  if ((rc = mdb_env_set_mapsize(raw, map_size)) != MDB_SUCCESS) {
    return env->Error("mdb_env_set_mapsize", rc);
  }
  // MDB_NOMETASYNC: a system crash may undo the last commit, which for a cache only forgets a
  // publication (blob bytes are fdatasync'd before their publication is committed), and it
  // saves one fsync per published unit.
  rc = mdb_env_open(raw, dir.c_str(), MDB_NOTLS | MDB_NOMETASYNC, 0600);
  if (rc != MDB_SUCCESS) return env->Error("cannot open the index in " + dir, rc);
  env->max_key_size_ = static_cast<size_t>(mdb_env_get_maxkeysize(raw));

  // Reader slots of processes that died (a killed mount) would otherwise pin old pages forever.
  int dead = 0;
  if (mdb_reader_check(raw, &dead) == MDB_SUCCESS && dead > 0) {
    IMGFS_LOG(kInfo, "cache " << label << ": cleared " << dead << " stale LMDB reader slots");
  }

  LmdbEnv* e = env.get();
  Status s = env->Write([e](MDB_txn* txn) {
    for (int i = 0; i < kDbCount; ++i) {
      int r = mdb_dbi_open(txn, kDbNames[i], MDB_CREATE, &e->dbis_[i]);
      if (r != MDB_SUCCESS) return r;
    }
    return MDB_SUCCESS;
  });
  if (!s.ok()) return s.WithContext("opening the index databases");
  return env;
}

LmdbEnv::~LmdbEnv() {
  // Database handles close with the environment.
  mdb_env_close(env_);
}

uint64_t LmdbEnv::map_size() const {
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  return info.me_mapsize;
}

Status LmdbEnv::Read(const Body& body) { return Run(false, body); }
Status LmdbEnv::Write(const Body& body) { return Run(true, body); }

Status LmdbEnv::Run(bool write, const Body& body) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    int rc;
    uint64_t size_seen;
    {
      std::shared_lock<std::shared_mutex> lock(resize_mu_);
      size_seen = map_size();
      MDB_txn* txn = nullptr;
      rc = mdb_txn_begin(env_, nullptr, write ? 0 : MDB_RDONLY, &txn);
      if (rc == MDB_SUCCESS) {
        rc = body(txn);
        if (rc == MDB_SUCCESS && write) {
          rc = mdb_txn_commit(txn);  // frees txn whatever the outcome
        } else if (rc == MDB_SUCCESS) {
          mdb_txn_abort(txn);  // a read transaction has nothing to commit
        } else {
          mdb_txn_abort(txn);
        }
      }
    }
    if (rc == MDB_SUCCESS) return Status::Ok();
    if (rc == MDB_NOTFOUND) return Status::NotFound("");
    if (rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED) {
      IMGFS_RETURN_IF_ERROR(Resize(rc == MDB_MAP_RESIZED, size_seen));
      continue;
    }
    return Error(write ? "index update" : "index read", rc);
  }
  return Status::IoError("cache " + label_ + ": the index stays full after growing its map to " +
                         std::to_string(map_size()) + " bytes");
}

Status LmdbEnv::Resize(bool adopt_only, uint64_t size_seen) {
  std::unique_lock<std::shared_mutex> lock(resize_mu_);
  uint64_t target = 0;  // 0: adopt the size another process set
  if (!adopt_only) {
    // Several threads that all hit MAP_FULL double the map once, not once each.
    if (map_size() > size_seen) return Status::Ok();
    target = map_size() * 2;
    IMGFS_LOG(kInfo, "cache " << label_ << ": index map full, growing it to " << target
                              << " bytes");
  }
  int rc = mdb_env_set_mapsize(env_, target);
  if (rc != MDB_SUCCESS) return Error("growing the index map", rc);
  return Status::Ok();
}

}  // namespace imgfs::cache
