// The content store and LMDB index behind cache/cache.h. docs/cache.md describes the layout
// and the record formats written here.
#include "cache/cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "base/digest.h"
#include "base/log.h"
#include "cache/blob_files.h"
#include "cache/lmdb_env.h"

namespace imgfs::cache {
namespace {

// Units are a few MiB at most (eStargz chunks, zstd frames, zran spans); a bigger one comes
// from a damaged or hostile index and would only exhaust memory.
constexpr uint64_t kMaxUnitSize = uint64_t{1} << 30;
// Access times feed a future LRU eviction; minute resolution is plenty and keeps the read path
// free of write transactions.
constexpr auto kAccessInterval = std::chrono::seconds(60);
constexpr size_t kOpenBlobFiles = 64;
constexpr int kFetchAttempts = 2;

// ---- record encodings (big-endian integers, so keys sort by offset) ----

void AppendU64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

uint64_t ReadU64(std::string_view s, size_t pos) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
  return v;
}

constexpr size_t kHexLen = 64;

// units: key = blob hex + coff; value = clen + unit sha256 hex (no hex for a unit verified by
// its caller's UnitRef::verify: its value is the 8-byte clen alone).
std::string UnitKey(std::string_view blob_hex, uint64_t coff) {
  std::string key(blob_hex);
  AppendU64(&key, coff);
  return key;
}

std::string UnitValue(uint64_t clen, std::string_view sha_hex) {
  std::string v;
  AppendU64(&v, clen);
  v.append(sha_hex);
  return v;
}

std::string_view UnitShaHex(const UnitRef& unit) {
  return unit.sha256.empty() ? std::string_view() : DigestHex(unit.sha256);
}

bool UnitValueMatches(std::string_view value, const UnitRef& unit) {
  std::string_view hex = UnitShaHex(unit);
  return value.size() == 8 + hex.size() && ReadU64(value, 0) == unit.clen &&
         value.substr(8) == hex;
}

// Whether a units record is of a unit of `clen` bytes, whatever its digest.
bool UnitValueHasLength(std::string_view value, uint64_t clen) {
  return value.size() >= 8 && ReadU64(value, 0) == clen;
}

// What a unit's bytes must satisfy, for messages.
std::string Expectation(const UnitRef& unit) {
  return unit.sha256.empty() ? std::string("the digests of its decoded chunks") : unit.sha256;
}

// Checks `bytes` against the unit's sha256 or its verify. On failure `*actual` says what was
// found instead ("sha256:..." or the verifier's complaint).
bool VerifyUnitBytes(const UnitRef& unit, std::string_view bytes, std::string* actual) {
  if (bytes.size() != unit.clen) {
    *actual = std::to_string(bytes.size()) + " bytes instead of " + std::to_string(unit.clen);
    return false;
  }
  if (!unit.sha256.empty()) {
    *actual = Sha256Digest(bytes);
    return *actual == unit.sha256;
  }
  Status s;
  try {
    s = unit.verify(bytes);
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("unit verifier threw: ") + e.what());
  } catch (...) {
    s = Status::Internal("unit verifier threw");
  }
  *actual = s.ok() ? std::string() : s.ToString();
  return s.ok();
}

// blobs: key = blob hex; value = version, flags, size, last access (unix seconds).
struct BlobRecord {
  uint64_t size = 0;
  bool complete = false;
  int64_t access_unix = 0;
};
constexpr char kBlobRecordVersion = 1;
constexpr size_t kBlobRecordLen = 2 + 8 + 8;

std::string EncodeBlobRecord(const BlobRecord& r) {
  std::string v;
  v.push_back(kBlobRecordVersion);
  v.push_back(r.complete ? 1 : 0);
  AppendU64(&v, r.size);
  AppendU64(&v, static_cast<uint64_t>(r.access_unix));
  return v;
}

// A record in an unknown format reads as "nothing known": it is rewritten, never trusted.
BlobRecord DecodeBlobRecord(std::string_view v) {
  BlobRecord r;
  if (v.size() != kBlobRecordLen || v[0] != kBlobRecordVersion) return r;
  r.complete = (v[1] & 1) != 0;
  r.size = ReadU64(v, 2);
  r.access_unix = static_cast<int64_t>(ReadU64(v, 10));
  return r;
}

int64_t NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string RangeText(const UnitRef& unit) {
  return "[" + std::to_string(unit.coff) + ", " + std::to_string(unit.coff + unit.clen) + ")";
}

// Single-flight key: units differing in any field are different fetches.
std::string FlightKey(const UnitRef& unit) {
  return std::string(DigestHex(unit.blob)) + ":" + std::to_string(unit.coff) + ":" +
         std::to_string(unit.clen) + ":" + std::string(UnitShaHex(unit));
}

Status CheckUnit(const UnitRef& unit) {
  Status s = ValidateDigest(unit.blob);
  if (!s.ok()) return s.WithContext("unit blob");
  if (unit.sha256.empty()) {
    if (!unit.verify) {
      return Status::InvalidArgument("unit of blob " + unit.blob + " at offset " +
                                     std::to_string(unit.coff) +
                                     " has neither a digest nor a verifier");
    }
  } else {
    s = ValidateDigest(unit.sha256);
    if (!s.ok()) return s.WithContext("unit of blob " + unit.blob);
  }
  if (unit.clen == 0 || unit.clen > kMaxUnitSize) {
    return Status::InvalidArgument("unit of blob " + unit.blob + " at offset " +
                                   std::to_string(unit.coff) + " has length " +
                                   std::to_string(unit.clen) + " (must be 1.." +
                                   std::to_string(kMaxUnitSize) + ")");
  }
  if (unit.coff > (uint64_t{1} << 62)) {
    return Status::InvalidArgument("unit of blob " + unit.blob + " has offset " +
                                   std::to_string(unit.coff) + ", beyond any blob");
  }
  return Status::Ok();
}

// Reads `key` of `dbi` into `*out`; MDB_NOTFOUND when absent.
int GetCopy(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string* out) {
  MDB_val k = MdbVal(key), v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_SUCCESS) out->assign(MdbView(v));
  return rc;
}

int Put(MDB_txn* txn, MDB_dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = MdbVal(key), v = MdbVal(value);
  return mdb_put(txn, dbi, &k, &v, 0);
}

// Deletes `key` if present; absence is success.
int DelIfPresent(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = MdbVal(key);
  int rc = mdb_del(txn, dbi, &k, nullptr);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

// Removes `<hex>.tmp.<pid>.<n>` files in `dir` left by writers that died (a crash, a killed
// pull). A file counts as stale only when its process is gone and it has not been written for
// an hour: a live writer in another PID namespace (a container sharing the cache) has a pid
// that means nothing here, but it keeps its file's mtime fresh.
void RemoveStaleTempFiles(const std::string& dir, std::string_view hex) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  const std::string prefix = std::string(hex) + ".tmp.";
  const time_t cutoff = ::time(nullptr) - 3600;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.substr(0, prefix.size()) != prefix) continue;
    long pid = std::strtol(e->d_name + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 ||
        errno != ESRCH) {
      continue;
    }
    std::string path = dir + "/" + std::string(name);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && st.st_mtime < cutoff) {
      IMGFS_LOG(kInfo, "removing " << path << ", left by a writer that died");
      ::unlink(path.c_str());
    }
  }
  ::closedir(d);
}

}  // namespace

// ---- per-process, per-root state ----

// Everything one process keeps for one cache root. Cache objects opened on the same root in
// one process share it (LMDB forbids a second environment on the same files in one process).
using CoreKey = std::tuple<pid_t, dev_t, ino_t>;  // process, index directory

struct Core {
  Core(CoreKey k, std::string r, std::unique_ptr<LmdbEnv> e)
      : key(k), root(std::move(r)), env(std::move(e)), files(root, kOpenBlobFiles) {}
  ~Core();

  const CoreKey key;
  const std::string root;
  std::unique_ptr<LmdbEnv> env;
  BlobFiles files;

  // Single-flight: one fetch per unit at a time; other readers wait for its result.
  std::mutex flight_mu;
  std::map<std::string, std::shared_future<Result<std::string>>> in_flight;  // GUARDED_BY
  std::atomic<int> fetches_in_flight{0};  // range requests to a BlobSource right now

  std::mutex access_mu;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> access_written;

  std::atomic<uint64_t> temp_counter{0};
};

namespace {

std::mutex& RegistryMutex() {
  static std::mutex* mu = new std::mutex;  // never destroyed: Cores may outlive statics
  return *mu;
}

std::map<CoreKey, std::weak_ptr<Core>>& Registry() {
  static auto* registry = new std::map<CoreKey, std::weak_ptr<Core>>;
  return *registry;
}

// Signalled when a Core has closed its environment and left the registry.
std::condition_variable& RegistryClosed() {
  static auto* cv = new std::condition_variable;
  return *cv;
}

// A fork while another thread holds the registry lock would leave the child's copy locked.
void InstallForkHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork([] { RegistryMutex().lock(); }, [] { RegistryMutex().unlock(); },
                   [] { RegistryMutex().unlock(); });
  });
}

}  // namespace

Core::~Core() {
  // Closing an environment drops this process's POSIX locks on the lock file; it must not
  // overlap with another open of the same root in this process, so Open waits for the entry
  // to leave the registry.
  std::lock_guard<std::mutex> lock(RegistryMutex());
  env.reset();
  Registry().erase(key);
  RegistryClosed().notify_all();
}

namespace {

class BlobWriterImpl : public BlobWriter {
 public:
  BlobWriterImpl(std::shared_ptr<Core> core, std::string digest, uint64_t size, int fd,
                 std::string temp_path)
      : core_(std::move(core)),
        digest_(std::move(digest)),
        size_(size),
        fd_(fd),
        temp_path_(std::move(temp_path)) {}

  ~BlobWriterImpl() override {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_path_.c_str());
  }

  Status Append(std::string_view bytes) override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (bytes.size() > size_ - written_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " is longer than its size " +
                                          std::to_string(size_)));
    }
    Status s = WriteFull(fd_, bytes);
    if (!s.ok()) return Fail(s.WithContext("cache " + core_->root + ": writing " + temp_path_));
    hasher_.Update(bytes);
    written_ += bytes.size();
    return Status::Ok();
  }

  Status Commit() override {
    if (committed_ || fd_ < 0) {
      return Status::Internal("blob writer for " + digest_ + " used after Commit or a failure");
    }
    if (written_ != size_) {
      return Fail(Status::InvalidArgument("blob " + digest_ + " has " + std::to_string(written_) +
                                          " bytes, its descriptor says " +
                                          std::to_string(size_)));
    }
    // The caller verified the stream too; checking here makes "a complete blob file is the
    // exact blob" a promise of the cache itself.
    std::string actual = hasher_.FinishDigest();
    if (actual != digest_) {
      IMGFS_LOG(kWarning, "cache " << core_->root << ": blob " << digest_
                                   << " was written with bytes that hash to " << actual);
      return Fail(Status::DigestMismatch("blob " + digest_ + " hashes to " + actual +
                                         "; nothing was cached"));
    }
    if (::fsync(fd_) != 0) {
      return Fail(ErrnoStatus("cache " + core_->root + ": fsync", temp_path_, errno));
    }
    ::close(fd_);
    fd_ = -1;
    std::string hex(DigestHex(digest_));
    std::string final_path = core_->files.PathOf(hex);
    if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoStatus("cache " + core_->root + ": cannot rename " + temp_path_ + " to",
                         final_path, errno);
    }
    committed_ = true;  // the temp file is gone; the blob file holds the bytes now
    std::string dir = core_->files.DirOf(hex);
    int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      ::fsync(dir_fd);  // makes the rename durable before the index says "complete"
      ::close(dir_fd);
    }
    core_->files.Forget(hex);  // a cached descriptor would read the replaced inode

    MDB_dbi blobs = core_->env->dbi(LmdbEnv::kBlobs);
    uint64_t size = size_;
    Status s = core_->env->Write([&](MDB_txn* txn) {
      std::string old;
      int rc = GetCopy(txn, blobs, hex, &old);
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
      BlobRecord r = rc == MDB_SUCCESS ? DecodeBlobRecord(old) : BlobRecord();
      r.size = size;
      r.complete = true;
      r.access_unix = NowUnix();
      return Put(txn, blobs, hex, EncodeBlobRecord(r));
    });
    return s.ok() ? s : s.WithContext("marking blob " + digest_ + " complete");
  }

 private:
  Status Fail(Status s) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(temp_path_.c_str());
    return s;
  }

  std::shared_ptr<Core> core_;
  const std::string digest_;
  const uint64_t size_;
  int fd_;
  const std::string temp_path_;
  uint64_t written_ = 0;
  bool committed_ = false;
  Sha256 hasher_;
};

class CacheImpl : public Cache {
 public:
  explicit CacheImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}

  const std::string& root() const override { return core_->root; }

  Status PutReference(std::string_view ref, std::string_view manifest_digest) override;
  Result<ReferenceRecord> GetReference(std::string_view ref) override;
  Status PutDocument(std::string_view digest, std::string_view media_type,
                     std::string_view bytes) override;
  Result<Document> GetDocument(std::string_view digest) override;
  Status PutLayerIndex(std::string_view blob_digest, std::string_view serialized) override;
  Result<std::string> GetLayerIndex(std::string_view blob_digest) override;
  Result<std::string> ReadUnit(const UnitRef& unit, BlobSource* source) override;
  Status FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                    uint64_t max_request_bytes) override;
  Status PutUnit(const UnitRef& unit, std::string_view bytes) override;
  bool HasUnit(std::string_view blob, uint64_t coff, uint64_t clen) override;
  int FetchesInFlight() override { return core_->fetches_in_flight.load(); }
  Result<std::unique_ptr<BlobWriter>> CreateBlobWriter(std::string_view blob_digest,
                                                       uint64_t size) override;
  BlobStats GetBlobStats(std::string_view blob_digest) override;

 private:
  LmdbEnv& env() { return *core_->env; }
  MDB_dbi dbi(LmdbEnv::Db db) { return core_->env->dbi(db); }
  std::string Prefix() const { return "cache " + core_->root + ": "; }

  // Whether the index says the unit's bytes are in the blob file.
  Result<bool> IsPublished(const UnitRef& unit);
  // IsPublished of the range [coff, coff + clen) of `blob`; with `unit` given, its record must
  // also carry the unit's digest.
  Result<bool> IsPublished(std::string_view blob, uint64_t coff, uint64_t clen,
                           const UnitRef* unit);
  // The unit's verified bytes from the store, or nullopt when they are not there. Stored bytes
  // that do not verify are unpublished (and the blob's complete flag cleared) first.
  Result<std::optional<std::string>> ReadStored(const UnitRef& unit);
  Status Unpublish(const UnitRef& unit);
  Result<std::string> FetchAndStore(const UnitRef& unit, BlobSource* source);
  // Up to `attempts` fetches of the unit alone until one verifies; stores it.
  Result<std::string> FetchVerifyStore(const UnitRef& unit, BlobSource* source, int attempts);
  // One FetchUnits request: `jobs` (sorted, one blob) from one ReadRange.
  struct FetchJob;
  void FetchGroup(const std::vector<FetchJob*>& jobs, BlobSource* source);
  void Finish(FetchJob* job, Result<std::string> result);
  Status SourceRead(BlobSource* source, std::string_view blob, uint64_t offset, uint64_t length,
                    std::string* out);
  // pwrite + fdatasync + publish of verified bytes.
  Status Store(const UnitRef& unit, std::string_view bytes);
  // Records the blob's access time, at most once per kAccessInterval per blob and process.
  void TouchBlob(std::string_view hex);
  // Deletes `key` of `db` if it still holds `bad` (another process may have fixed it).
  void DropCorrupt(LmdbEnv::Db db, std::string_view key, std::string_view bad);

  std::shared_ptr<Core> core_;
};

// ---- metadata ----

Status CacheImpl::PutReference(std::string_view ref, std::string_view manifest_digest) {
  if (ref.empty() || ref.size() > env().max_key_size()) {
    return Status::InvalidArgument("reference '" + std::string(ref) +
                                   "' is empty or too long to cache");
  }
  IMGFS_RETURN_IF_ERROR(ValidateDigest(manifest_digest));
  std::string value;
  AppendU64(&value, static_cast<uint64_t>(NowUnix()));
  value.append(manifest_digest);
  return env().Write([&](MDB_txn* txn) { return Put(txn, dbi(LmdbEnv::kRefs), ref, value); });
}

Result<ReferenceRecord> CacheImpl::GetReference(std::string_view ref) {
  if (ref.empty() || ref.size() > env().max_key_size()) {
    return Status::NotFound("reference '" + std::string(ref) + "' is not in the cache");
  }
  std::string value;
  Status s = env().Read([&](MDB_txn* txn) {
    return GetCopy(txn, dbi(LmdbEnv::kRefs), ref, &value);
  });
  if (s.IsNotFound()) {
    return Status::NotFound("reference " + std::string(ref) + " is not in the cache " +
                            core_->root);
  }
  IMGFS_RETURN_IF_ERROR(s);
  ReferenceRecord record;
  if (value.size() > 8) {
    record.fetched_unix = static_cast<int64_t>(ReadU64(value, 0));
    record.manifest_digest = value.substr(8);
  }
  if (!ValidateDigest(record.manifest_digest).ok()) {
    IMGFS_LOG(kWarning, Prefix() << "dropping a damaged record for reference " << ref);
    DropCorrupt(LmdbEnv::kRefs, ref, value);
    return Status::NotFound("reference " + std::string(ref) +
                            " is not in the cache (a damaged record was dropped)");
  }
  return record;
}

Status CacheImpl::PutDocument(std::string_view digest, std::string_view media_type,
                              std::string_view bytes) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  std::string actual = Sha256Digest(bytes);
  if (actual != digest) {
    return Status::DigestMismatch("document " + std::string(digest) + " hashes to " + actual +
                                  "; not cached");
  }
  if (media_type.size() > 0xffff) return Status::InvalidArgument("media type too long");
  std::string value;
  value.push_back(static_cast<char>(media_type.size() >> 8));
  value.push_back(static_cast<char>(media_type.size() & 0xff));
  value.append(media_type);
  value.append(bytes);
  return env().Write([&](MDB_txn* txn) { return Put(txn, dbi(LmdbEnv::kDocs), digest, value); });
}

Result<Document> CacheImpl::GetDocument(std::string_view digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  std::string value;
  Status s = env().Read([&](MDB_txn* txn) {
    return GetCopy(txn, dbi(LmdbEnv::kDocs), digest, &value);
  });
  if (s.IsNotFound()) return Status::NotFound("document " + std::string(digest) + " is not cached");
  IMGFS_RETURN_IF_ERROR(s);
  Document doc;
  bool intact = false;
  if (value.size() >= 2) {
    size_t type_len = (static_cast<unsigned char>(value[0]) << 8) |
                      static_cast<unsigned char>(value[1]);
    if (value.size() >= 2 + type_len) {
      doc.media_type = value.substr(2, type_len);
      doc.bytes = value.substr(2 + type_len);
      intact = Sha256Digest(doc.bytes) == digest;
    }
  }
  if (!intact) {
    IMGFS_LOG(kWarning, Prefix() << "document " << digest
                                 << " is corrupt in the index; dropping it");
    DropCorrupt(LmdbEnv::kDocs, digest, value);
    return Status::NotFound("document " + std::string(digest) +
                            " is not cached (a corrupt copy was dropped)");
  }
  return doc;
}

Status CacheImpl::PutLayerIndex(std::string_view blob_digest, std::string_view serialized) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  // The index is opaque here, but a checksum lets a damaged copy be dropped instead of fed
  // to the deserializer.
  std::string value(DigestHex(Sha256Digest(serialized)));
  value.append(serialized);
  std::string_view hex = DigestHex(blob_digest);
  return env().Write([&](MDB_txn* txn) { return Put(txn, dbi(LmdbEnv::kLayers), hex, value); });
}

Result<std::string> CacheImpl::GetLayerIndex(std::string_view blob_digest) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string_view hex = DigestHex(blob_digest);
  std::string value;
  Status s = env().Read([&](MDB_txn* txn) {
    return GetCopy(txn, dbi(LmdbEnv::kLayers), hex, &value);
  });
  if (s.IsNotFound()) {
    return Status::NotFound("no layer index of " + std::string(blob_digest) + " in the cache");
  }
  IMGFS_RETURN_IF_ERROR(s);
  std::string_view v(value);
  if (v.size() < kHexLen || DigestHex(Sha256Digest(v.substr(kHexLen))) != v.substr(0, kHexLen)) {
    IMGFS_LOG(kWarning, Prefix() << "layer index of " << blob_digest
                                 << " is corrupt in the index; dropping it");
    DropCorrupt(LmdbEnv::kLayers, hex, value);
    return Status::NotFound("no layer index of " + std::string(blob_digest) +
                            " in the cache (a corrupt copy was dropped)");
  }
  return value.substr(kHexLen);
}

void CacheImpl::DropCorrupt(LmdbEnv::Db db, std::string_view key, std::string_view bad) {
  Status s = env().Write([&](MDB_txn* txn) {
    std::string now;
    int rc = GetCopy(txn, dbi(db), key, &now);
    if (rc != MDB_SUCCESS) return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
    if (now != bad) return MDB_SUCCESS;
    return DelIfPresent(txn, dbi(db), key);
  });
  if (!s.ok()) IMGFS_LOG(kWarning, "dropping a corrupt record failed: " << s.ToString());
}

// ---- content ----

Result<bool> CacheImpl::IsPublished(const UnitRef& unit) {
  return IsPublished(unit.blob, unit.coff, unit.clen, &unit);
}

Result<bool> CacheImpl::IsPublished(std::string_view blob, uint64_t coff, uint64_t clen,
                                    const UnitRef* unit) {
  std::string_view hex = DigestHex(blob);
  std::string key = UnitKey(hex, coff);
  bool present = false;
  Status s = env().Read([&](MDB_txn* txn) {
    MDB_val k = MdbVal(hex), v;
    int rc = mdb_get(txn, dbi(LmdbEnv::kBlobs), &k, &v);
    if (rc == MDB_SUCCESS) {
      BlobRecord r = DecodeBlobRecord(MdbView(v));
      // A range past the end of a complete blob is a bad UnitRef, not a damaged store: it
      // must not cost the blob its complete flag.
      if (r.complete && coff + clen <= r.size) {
        present = true;
        return MDB_SUCCESS;
      }
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
    k = MdbVal(key);
    rc = mdb_get(txn, dbi(LmdbEnv::kUnits), &k, &v);
    if (rc == MDB_SUCCESS) {
      present = unit != nullptr ? UnitValueMatches(MdbView(v), *unit)
                                : UnitValueHasLength(MdbView(v), clen);
    }
    return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
  });
  IMGFS_RETURN_IF_ERROR(s);
  return present;
}

Result<std::optional<std::string>> CacheImpl::ReadStored(const UnitRef& unit) {
  IMGFS_ASSIGN_OR_RETURN(bool published, IsPublished(unit));
  if (!published) return std::optional<std::string>();
  std::string_view hex = DigestHex(unit.blob);
  std::string bytes, actual;
  for (int attempt = 0; attempt < 2; ++attempt) {
    IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobFd> file, core_->files.Get(hex));
    Status s = PreadFull(file->fd(), unit.coff, unit.clen, &bytes);
    if (!s.ok()) {
      actual = s.ToString();
    } else if (bytes.size() != unit.clen) {
      actual = "a short file (" + std::to_string(bytes.size()) + " bytes)";
    } else if (VerifyUnitBytes(unit, bytes, &actual)) {
      return std::optional<std::string>(std::move(bytes));
    }
    // The blob file may have been replaced by a committed BlobWriter since the descriptor was
    // opened: look again through a fresh one before calling the store corrupt.
    core_->files.Forget(hex);
  }
  IMGFS_LOG(kWarning, Prefix() << "stored unit " << RangeText(unit) << " of blob " << unit.blob
                               << " is corrupt (expected " << Expectation(unit) << ", found "
                               << actual << "); dropping it and fetching it again");
  IMGFS_RETURN_IF_ERROR(Unpublish(unit));
  return std::optional<std::string>();
}

Status CacheImpl::Unpublish(const UnitRef& unit) {
  std::string_view hex = DigestHex(unit.blob);
  std::string key = UnitKey(hex, unit.coff);
  return env().Write([&](MDB_txn* txn) {
    std::string value;
    int rc = GetCopy(txn, dbi(LmdbEnv::kUnits), key, &value);
    if (rc == MDB_SUCCESS && UnitValueMatches(value, unit)) {
      rc = DelIfPresent(txn, dbi(LmdbEnv::kUnits), key);
      if (rc != MDB_SUCCESS) return rc;
    } else if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return rc;
    }
    rc = GetCopy(txn, dbi(LmdbEnv::kBlobs), hex, &value);
    if (rc == MDB_NOTFOUND) return MDB_SUCCESS;
    if (rc != MDB_SUCCESS) return rc;
    BlobRecord r = DecodeBlobRecord(value);
    if (!r.complete) return MDB_SUCCESS;
    r.complete = false;
    return Put(txn, dbi(LmdbEnv::kBlobs), hex, EncodeBlobRecord(r));
  });
}

Status CacheImpl::Store(const UnitRef& unit, std::string_view bytes) {
  std::string_view hex = DigestHex(unit.blob);
  IMGFS_ASSIGN_OR_RETURN(std::shared_ptr<BlobFd> file, core_->files.Get(hex));
  std::string path = core_->files.PathOf(hex);
  Status s = PwriteFull(file->fd(), unit.coff, bytes);
  if (!s.ok()) return s.WithContext(Prefix() + path);
  // The bytes must be durable before the index says they are there.
  if (::fdatasync(file->fd()) != 0) return ErrnoStatus(Prefix() + "fdatasync", path, errno);

  std::string key = UnitKey(hex, unit.coff);
  std::string value = UnitValue(unit.clen, UnitShaHex(unit));
  int64_t now = NowUnix();
  s = env().Write([&](MDB_txn* txn) {
    int rc = Put(txn, dbi(LmdbEnv::kUnits), key, value);
    if (rc != MDB_SUCCESS) return rc;
    std::string old;
    rc = GetCopy(txn, dbi(LmdbEnv::kBlobs), hex, &old);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
    BlobRecord r = rc == MDB_SUCCESS ? DecodeBlobRecord(old) : BlobRecord();
    r.access_unix = now;
    return Put(txn, dbi(LmdbEnv::kBlobs), hex, EncodeBlobRecord(r));
  });
  if (!s.ok()) return s.WithContext("publishing unit " + RangeText(unit) + " of " + unit.blob);
  std::lock_guard<std::mutex> lock(core_->access_mu);
  core_->access_written[std::string(hex)] = std::chrono::steady_clock::now();
  return Status::Ok();
}

void CacheImpl::TouchBlob(std::string_view hex) {
  auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(core_->access_mu);
    auto [it, inserted] = core_->access_written.try_emplace(std::string(hex), now);
    if (!inserted) {
      if (now - it->second < kAccessInterval) return;
      it->second = now;
    }
  }
  int64_t now_unix = NowUnix();
  Status s = env().Write([&](MDB_txn* txn) {
    std::string old;
    int rc = GetCopy(txn, dbi(LmdbEnv::kBlobs), hex, &old);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
    BlobRecord r = rc == MDB_SUCCESS ? DecodeBlobRecord(old) : BlobRecord();
    r.access_unix = now_unix;
    return Put(txn, dbi(LmdbEnv::kBlobs), hex, EncodeBlobRecord(r));
  });
  // Access times only steer eviction; a failure to record one must not fail a read.
  if (!s.ok()) IMGFS_LOG(kDebug, "recording an access time: " << s.ToString());
}

Result<std::string> CacheImpl::ReadUnit(const UnitRef& unit, BlobSource* source) {
  IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> stored, ReadStored(unit));
  if (stored) {
    TouchBlob(DigestHex(unit.blob));
    return std::move(*stored);
  }
  if (source == nullptr) {
    return Status::Unavailable("bytes " + RangeText(unit) + " of blob " + unit.blob +
                               " are not in the cache and offline");
  }

  std::string key = FlightKey(unit);
  std::promise<Result<std::string>> promise;
  std::shared_future<Result<std::string>> future;
  bool leader = false;
  {
    std::lock_guard<std::mutex> lock(core_->flight_mu);
    auto it = core_->in_flight.find(key);
    if (it != core_->in_flight.end()) {
      future = it->second;
    } else {
      future = promise.get_future().share();
      core_->in_flight.emplace(key, future);
      leader = true;
    }
  }
  if (!leader) return future.get();

  Result<std::string> result = Status::Internal("unit fetch did not run");
  try {
    result = FetchAndStore(unit, source);
  } catch (const std::exception& e) {
    // Waiters must get an answer whatever happens (bad_alloc on a huge unit).
    result = Status::Internal(std::string("fetching a unit: ") + e.what());
  }
  promise.set_value(result);
  {
    std::lock_guard<std::mutex> lock(core_->flight_mu);
    core_->in_flight.erase(key);
  }
  return result;
}

Result<std::string> CacheImpl::FetchAndStore(const UnitRef& unit, BlobSource* source) {
  // Another thread may have published the unit between our miss and our turn as leader.
  IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> stored, ReadStored(unit));
  if (stored) return std::move(*stored);
  return FetchVerifyStore(unit, source, kFetchAttempts);
}

Status CacheImpl::SourceRead(BlobSource* source, std::string_view blob, uint64_t offset,
                             uint64_t length, std::string* out) {
  core_->fetches_in_flight.fetch_add(1);
  Status s;
  try {
    s = source->ReadRange(blob, offset, length, out);
  } catch (const std::exception& e) {
    s = Status::Internal(std::string("blob source threw: ") + e.what());
  }
  core_->fetches_in_flight.fetch_sub(1);
  return s;
}

Result<std::string> CacheImpl::FetchVerifyStore(const UnitRef& unit, BlobSource* source,
                                                int attempts) {
  std::string bytes, actual;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    bytes.clear();
    Status s = SourceRead(source, unit.blob, unit.coff, unit.clen, &bytes);
    if (!s.ok()) return s.WithContext("fetching bytes " + RangeText(unit) + " of " + unit.blob);
    if (VerifyUnitBytes(unit, bytes, &actual)) {
      Status stored_status = Store(unit, bytes);
      // The bytes are verified: a full or failing disk costs the cache entry, not the read.
      if (!stored_status.ok()) {
        IMGFS_LOG(kWarning, "not caching a verified unit: " << stored_status.ToString());
      }
      return bytes;
    }
    IMGFS_LOG(kWarning, Prefix() << "fetched bytes " << RangeText(unit) << " of blob "
                                 << unit.blob << " do not verify: expected "
                                 << Expectation(unit) << ", got " << actual << " (attempt "
                                 << attempt << " of " << attempts << ")");
  }
  IMGFS_LOG(kError, Prefix() << "giving up on bytes " << RangeText(unit) << " of blob "
                             << unit.blob << " (coff " << unit.coff
                             << "): they do not verify; nothing was cached");
  return Status::DigestMismatch("bytes " + RangeText(unit) + " of blob " + unit.blob +
                                " do not match " + Expectation(unit) + " (got " + actual +
                                ") after " + std::to_string(kFetchAttempts) +
                                " fetches; nothing was cached");
}

// A unit this FetchUnits call leads the fetch of: readers of the same unit wait on `promise`.
struct CacheImpl::FetchJob {
  const UnitRef* unit = nullptr;
  std::string key;
  std::promise<Result<std::string>> promise;
  Status status;  // the outcome, for FetchUnits' return value
  bool done = false;
};

void CacheImpl::Finish(FetchJob* job, Result<std::string> result) {
  job->status = result.status();
  job->done = true;
  job->promise.set_value(std::move(result));
  std::lock_guard<std::mutex> lock(core_->flight_mu);
  core_->in_flight.erase(job->key);
}

void CacheImpl::FetchGroup(const std::vector<FetchJob*>& jobs, BlobSource* source) {
  auto fetch_alone = [&](FetchJob* job, int attempts) {
    Result<std::string> r = Status::Internal("unit fetch did not run");
    try {
      r = FetchVerifyStore(*job->unit, source, attempts);
    } catch (const std::exception& e) {
      r = Status::Internal(std::string("fetching a unit: ") + e.what());
    }
    Finish(job, std::move(r));
  };
  if (jobs.size() == 1) {
    fetch_alone(jobs[0], kFetchAttempts);
    return;
  }
  const UnitRef& first = *jobs.front()->unit;
  const uint64_t start = first.coff;
  const uint64_t end = jobs.back()->unit->coff + jobs.back()->unit->clen;
  std::string bytes;
  Status s;
  try {
    s = SourceRead(source, first.blob, start, end - start, &bytes);
  } catch (const std::bad_alloc&) {
    s = Status::Internal("out of memory for a " + std::to_string(end - start) + "-byte request");
  }
  if (s.ok() && bytes.size() != end - start) {
    s = Status::Unavailable("the source returned " + std::to_string(bytes.size()) +
                            " bytes instead of " + std::to_string(end - start));
  }
  if (!s.ok()) {
    s = s.WithContext("fetching bytes [" + std::to_string(start) + ", " + std::to_string(end) +
                      ") of " + first.blob);
    for (FetchJob* job : jobs) Finish(job, s);
    return;
  }
  for (FetchJob* job : jobs) {
    const UnitRef& unit = *job->unit;
    std::string_view piece = std::string_view(bytes).substr(unit.coff - start, unit.clen);
    std::string actual;
    if (!VerifyUnitBytes(unit, piece, &actual)) {
      IMGFS_LOG(kWarning, Prefix() << "fetched bytes " << RangeText(unit) << " of blob "
                                   << unit.blob << " do not verify: expected "
                                   << Expectation(unit) << ", got " << actual
                                   << " (coalesced fetch; fetching it alone)");
      fetch_alone(job, kFetchAttempts - 1);
      continue;
    }
    Status stored = Store(unit, piece);
    if (!stored.ok()) IMGFS_LOG(kWarning, "not caching a verified unit: " << stored.ToString());
    Finish(job, std::string(piece));
  }
}

Status CacheImpl::FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                             uint64_t max_request_bytes) {
  for (const UnitRef& unit : units) IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  std::vector<const UnitRef*> sorted;
  sorted.reserve(units.size());
  for (const UnitRef& unit : units) sorted.push_back(&unit);
  std::sort(sorted.begin(), sorted.end(), [](const UnitRef* a, const UnitRef* b) {
    return std::tie(a->blob, a->coff, a->clen) < std::tie(b->blob, b->coff, b->clen);
  });

  Status first_error;
  auto note = [&](const Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };
  std::vector<std::unique_ptr<FetchJob>> jobs;
  std::vector<std::shared_future<Result<std::string>>> others;
  std::string last_key;
  for (const UnitRef* unit : sorted) {
    std::string key = FlightKey(*unit);
    if (key == last_key) continue;  // the same unit twice
    last_key = key;
    Result<bool> published = IsPublished(*unit);
    if (!published.ok()) {
      note(published.status());
      continue;
    }
    if (*published) continue;
    if (source == nullptr) {
      note(Status::Unavailable("bytes " + RangeText(*unit) + " of blob " + unit->blob +
                               " are not in the cache and offline"));
      continue;
    }
    std::lock_guard<std::mutex> lock(core_->flight_mu);
    auto it = core_->in_flight.find(key);
    if (it != core_->in_flight.end()) {
      others.push_back(it->second);
      continue;
    }
    auto job = std::make_unique<FetchJob>();
    job->unit = unit;
    job->key = key;
    core_->in_flight.emplace(key, job->promise.get_future().share());
    jobs.push_back(std::move(job));
  }

  // Runs of units close enough to share a request.
  std::vector<std::vector<FetchJob*>> groups;
  uint64_t group_start = 0, group_end = 0;
  for (auto& job : jobs) {
    const UnitRef& u = *job->unit;
    bool join = !groups.empty() && groups.back().back()->unit->blob == u.blob &&
                u.coff >= group_end && u.coff - group_end <= kCoalesceGapBytes &&
                u.coff + u.clen - group_start <= max_request_bytes;
    if (!join) {
      groups.emplace_back();
      group_start = u.coff;
    }
    groups.back().push_back(job.get());
    group_end = u.coff + u.clen;
  }

  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < groups.size();) {
      try {
        FetchGroup(groups[i], source);
      } catch (const std::exception& e) {
        IMGFS_LOG(kError, Prefix() << "fetching units failed unexpectedly: " << e.what());
      }
    }
  };
  std::vector<std::thread> helpers;
  size_t want = std::min<size_t>(kFetchParallelism, groups.size());
  for (size_t i = 1; i < want; ++i) {
    try {
      helpers.emplace_back(worker);
    } catch (const std::system_error& e) {
      // No thread to spare: the calling thread fetches the rest itself.
      IMGFS_LOG(kDebug, "FetchUnits runs with fewer threads: " << e.what());
      break;
    }
  }
  worker();
  for (std::thread& t : helpers) t.join();
  for (auto& job : jobs) {
    // Waiters must always get an answer, even when a group failed unexpectedly.
    if (!job->done) Finish(job.get(), Status::Internal("a unit fetch ended without a result"));
    note(job->status);
  }
  for (auto& future : others) note(future.get().status());
  return first_error;
}

Status CacheImpl::PutUnit(const UnitRef& unit, std::string_view bytes) {
  IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  if (bytes.size() != unit.clen) {
    return Status::InvalidArgument("unit " + RangeText(unit) + " of " + unit.blob + " given " +
                                   std::to_string(bytes.size()) + " bytes");
  }
  std::string actual;
  if (!VerifyUnitBytes(unit, bytes, &actual)) {
    return Status::DigestMismatch("bytes " + RangeText(unit) + " of blob " + unit.blob +
                                  " do not verify (" + actual + ", expected " +
                                  Expectation(unit) + "); not cached");
  }
  return Store(unit, bytes);
}

bool CacheImpl::HasUnit(std::string_view blob, uint64_t coff, uint64_t clen) {
  if (!ValidateDigest(blob).ok() || clen == 0 || clen > kMaxUnitSize ||
      coff > (uint64_t{1} << 62)) {
    return false;
  }
  Result<bool> r = IsPublished(blob, coff, clen, nullptr);
  return r.ok() && *r;
}

Result<std::unique_ptr<BlobWriter>> CacheImpl::CreateBlobWriter(std::string_view blob_digest,
                                                                uint64_t size) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(blob_digest));
  std::string_view hex = DigestHex(blob_digest);
  std::string dir = core_->files.DirOf(hex);
  Status s = MakeDirs(dir, 0700);
  if (!s.ok()) return s.WithContext("cache " + core_->root);
  RemoveStaleTempFiles(dir, hex);
  // Bytes stream into a private file and replace the blob file only at Commit, so neither
  // this process nor another ever reads an unverified stream through the blob's path.
  std::string temp = dir + "/" + std::string(hex) + ".tmp." + std::to_string(::getpid()) + "." +
                     std::to_string(core_->temp_counter.fetch_add(1));
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(Prefix() + "cannot create", temp, errno);
  return std::unique_ptr<BlobWriter>(
      new BlobWriterImpl(core_, std::string(blob_digest), size, fd, temp));
}

BlobStats CacheImpl::GetBlobStats(std::string_view blob_digest) {
  BlobStats stats;
  if (!ValidateDigest(blob_digest).ok()) return stats;
  std::string_view hex = DigestHex(blob_digest);
  Status s = env().Read([&](MDB_txn* txn) {
    stats = BlobStats();  // the body may run again after a map resize
    MDB_val k = MdbVal(hex), v;
    int rc = mdb_get(txn, dbi(LmdbEnv::kBlobs), &k, &v);
    if (rc == MDB_SUCCESS) {
      BlobRecord r = DecodeBlobRecord(MdbView(v));
      stats.size = r.size;
      stats.complete = r.complete;
    } else if (rc != MDB_NOTFOUND) {
      return rc;
    }
    MDB_cursor* cursor = nullptr;
    rc = mdb_cursor_open(txn, dbi(LmdbEnv::kUnits), &cursor);
    if (rc != MDB_SUCCESS) return rc;
    k = MdbVal(hex);
    for (rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE); rc == MDB_SUCCESS;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      std::string_view key = MdbView(k);
      if (key.size() != kHexLen + 8 || key.substr(0, kHexLen) != hex) break;
      std::string_view value = MdbView(v);
      if (value.size() != 8 + kHexLen && value.size() != 8) continue;
      ++stats.units_present;
      stats.bytes_present += ReadU64(value, 0);
    }
    mdb_cursor_close(cursor);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return rc;
    if (stats.complete) stats.bytes_present = stats.size;
    return MDB_SUCCESS;
  });
  if (!s.ok()) IMGFS_LOG(kWarning, "blob stats of " << blob_digest << ": " << s.ToString());
  return stats;
}

}  // namespace

// ---- opening ----

Result<std::unique_ptr<Cache>> Cache::Open(const std::string& root_arg) {
  std::string root = root_arg;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (root.empty()) return Status::InvalidArgument("the cache directory is empty");
  const std::string hint = " (set IMGFS_CACHE to a writable directory)";
  for (const std::string& dir : {root, root + "/blobs/sha256", root + "/index"}) {
    Status s = MakeDirs(dir, 0700);
    if (!s.ok()) return Status::IoError("cache " + root + ": " + s.message() + hint);
  }
  for (const std::string& dir : {root + "/blobs/sha256", root + "/index"}) {
    if (::access(dir.c_str(), W_OK) != 0) {
      return Status::IoError("cache " + root + ": " + dir + " is not writable: " +
                             std::strerror(errno) + hint);
    }
  }
  struct stat st;
  std::string index_dir = root + "/index";
  if (::stat(index_dir.c_str(), &st) != 0) {
    return Status::IoError("cache " + root + ": cannot stat " + index_dir + ": " +
                           std::strerror(errno));
  }

  InstallForkHandlers();
  CoreKey key{::getpid(), st.st_dev, st.st_ino};
  std::shared_ptr<Core> core;
  {
    std::unique_lock<std::mutex> lock(RegistryMutex());
    for (;;) {
      auto it = Registry().find(key);
      if (it == Registry().end()) break;
      core = it->second.lock();
      if (core) break;
      RegistryClosed().wait(lock);  // the last user is closing it right now
    }
    if (!core) {
      auto env = LmdbEnv::Open(index_dir, root);
      if (!env.ok()) return env.status();
      core = std::make_shared<Core>(key, root, std::move(env).value());
      Registry()[key] = core;
    }
  }
  return std::unique_ptr<Cache>(new CacheImpl(std::move(core)));
}

std::string Cache::DefaultRoot() {
  if (const char* env = std::getenv("IMGFS_CACHE"); env != nullptr && *env != '\0') return env;
  if (::geteuid() == 0) return "/var/lib/imgfs";
  // XDG requires an absolute path; a relative one is ignored, as the spec says.
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] == '/') {
    return std::string(xdg) + "/imgfs";
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/') {
    return std::string(home) + "/.cache/imgfs";
  }
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(::geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found != nullptr &&
      found->pw_dir != nullptr && found->pw_dir[0] == '/') {
    return std::string(found->pw_dir) + "/.cache/imgfs";
  }
  return "/tmp/imgfs-" + std::to_string(::geteuid());
}

}  // namespace imgfs::cache
