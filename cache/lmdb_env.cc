#include "cache/lmdb_env.h"

#include <lmdb.h>

#include "base/log.h"

namespace imgfs::cache {
namespace {

constexpr const char* kDbNames[kDbCount] = {"refs", "docs", "layers", "units", "blobs"};

// Enough for many mounts with many FUSE threads each; every concurrent read transaction holds
// a slot (MDB_NOTLS), and the default of 126 runs out on a busy shared host.
constexpr unsigned kMaxReaders = 1024;

// A run that keeps hitting MAP_FULL after this many doublings has a bug, not a small map.
constexpr int kMaxAttempts = 16;

MDB_val Val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }

std::string_view View(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

bool NeedsRerun(int rc) { return rc == MDB_MAP_FULL || rc == MDB_MAP_RESIZED; }

// Closes a cursor on every exit path.
struct CursorCloser {
  void operator()(MDB_cursor* c) const { mdb_cursor_close(c); }
};

}  // namespace

// ---- LmdbTxn ----

LmdbTxn::~LmdbTxn() {
  if (txn_ != nullptr) mdb_txn_abort(txn_);
}

Status LmdbTxn::Check(int rc, std::string_view what) {
  if (rc == MDB_SUCCESS) return Status::Ok();
  if (rc == MDB_NOTFOUND) return Status::NotFound("");
  if (rc_ == MDB_SUCCESS) rc_ = rc;
  return env_->Error(what, rc);
}

Status LmdbTxn::Get(Db db, std::string_view key, std::string* value) {
  return Visit(db, key, [value](std::string_view v) { value->assign(v); });
}

Status LmdbTxn::Visit(Db db, std::string_view key,
                      const std::function<void(std::string_view)>& fn) {
  if (rc_ != MDB_SUCCESS) return env_->Error("index read", rc_);
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn_, env_->dbis_[static_cast<int>(db)], &k, &v);
  if (rc == MDB_SUCCESS) fn(View(v));
  return Check(rc, "index read");
}

Status LmdbTxn::Put(Db db, std::string_view key, std::string_view value) {
  if (!write_) return Status::Internal("LmdbTxn::Put in a read transaction");
  if (rc_ != MDB_SUCCESS) return env_->Error("index update", rc_);
  MDB_val k = Val(key), v = Val(value);
  return Check(mdb_put(txn_, env_->dbis_[static_cast<int>(db)], &k, &v, 0), "index update");
}

Status LmdbTxn::Delete(Db db, std::string_view key) {
  if (!write_) return Status::Internal("LmdbTxn::Delete in a read transaction");
  if (rc_ != MDB_SUCCESS) return env_->Error("index update", rc_);
  MDB_val k = Val(key);
  int rc = mdb_del(txn_, env_->dbis_[static_cast<int>(db)], &k, nullptr);
  return rc == MDB_NOTFOUND ? Status::Ok() : Check(rc, "index update");
}

Status LmdbTxn::Scan(Db db, std::string_view from,
                     const std::function<bool(std::string_view, std::string_view)>& fn) {
  if (rc_ != MDB_SUCCESS) return env_->Error("index read", rc_);
  MDB_cursor* raw = nullptr;
  int rc = mdb_cursor_open(txn_, env_->dbis_[static_cast<int>(db)], &raw);
  if (rc != MDB_SUCCESS) return Check(rc, "index read");
  std::unique_ptr<MDB_cursor, CursorCloser> cursor(raw);
  MDB_val k = Val(from), v;
  MDB_cursor_op op = from.empty() ? MDB_FIRST : MDB_SET_RANGE;
  for (rc = mdb_cursor_get(raw, &k, &v, op); rc == MDB_SUCCESS;
       rc = mdb_cursor_get(raw, &k, &v, MDB_NEXT)) {
    if (!fn(View(k), View(v))) return Status::Ok();
  }
  return rc == MDB_NOTFOUND ? Status::Ok() : Check(rc, "index read");
}

Status LmdbTxn::Finish() {
  MDB_txn* txn = txn_;
  txn_ = nullptr;
  if (!write_) {
    mdb_txn_abort(txn);  // a read transaction has nothing to commit
    return Status::Ok();
  }
  return Check(mdb_txn_commit(txn), "index update");  // frees txn whatever the outcome
}

// ---- LmdbEnv ----

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
  Status s = env->Write([e](LmdbTxn& txn) {
    for (int i = 0; i < kDbCount; ++i) {
      MDB_dbi dbi = 0;
      IMGFS_RETURN_IF_ERROR(txn.Check(mdb_dbi_open(txn.txn_, kDbNames[i], MDB_CREATE, &dbi),
                                      std::string("opening database ") + kDbNames[i]));
      e->dbis_[i] = dbi;
    }
    return Status::Ok();
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
    Status s;
    uint64_t size_seen;
    {
      ReaderMutexLock lock(&resize_mu_);
      size_seen = map_size();
      MDB_txn* raw = nullptr;
      rc = mdb_txn_begin(env_, nullptr, write ? 0 : MDB_RDONLY, &raw);
      if (rc != MDB_SUCCESS) {
        if (!NeedsRerun(rc)) return Error(write ? "index update" : "index read", rc);
      } else {
        // Aborted by its destructor on every path but a successful Finish, a throwing body
        // included.
        LmdbTxn txn(this, raw, write);
        s = body(txn);
        if (s.ok() && txn.rc_ == MDB_SUCCESS) s = txn.Finish();
        rc = txn.rc_;
      }
    }
    if (NeedsRerun(rc)) {
      IMGFS_RETURN_IF_ERROR(Resize(rc == MDB_MAP_RESIZED, size_seen));
      continue;
    }
    if (s.ok() && rc != MDB_SUCCESS) s = Error(write ? "index update" : "index read", rc);
    return s;
  }
  return Status::IoError("cache " + label_ + ": the index stays full after growing its map to " +
                         std::to_string(map_size()) + " bytes");
}

Status LmdbEnv::Resize(bool adopt_only, uint64_t size_seen) {
  WriterMutexLock lock(&resize_mu_);
  uint64_t target = 0;  // 0: adopt the size another process set
  if (!adopt_only) {
    // Several threads that all hit MAP_FULL double the map once, not once each.
    if (map_size() > size_seen) return Status::Ok();
    target = map_size() * 2;
    IMGFS_LOG(kInfo,
              "cache " << label_ << ": index map full, growing it to " << target << " bytes");
  }
  int rc = mdb_env_set_mapsize(env_, target);
  if (rc != MDB_SUCCESS) return Error("growing the index map", rc);
  return Status::Ok();
}

}  // namespace imgfs::cache
