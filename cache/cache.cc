// Cache: the composition of the content store's parts (docs/cache.md has the picture):
//   MetadataStore  refs, docs, layers records           cache/metadata_store.h
//   UnitStore      blob files, units/blobs records      cache/unit_store.h
//   Fetcher        single-flight, coalescing, fan-out  cache/fetcher.h
//   Eviction       accounting and giving space back    cache/eviction.h
//   Verifier       re-checking everything stored        cache/verify.h
// over one LmdbEnv (cache/lmdb_env.h) per root and process.
#include "cache/cache.h"

#include <pthread.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "base/digest.h"
#include "base/mutex.h"
#include "cache/auto_gc.h"
#include "cache/blob_files.h"
#include "cache/decoded_files.h"
#include "cache/eviction.h"
#include "cache/fetcher.h"
#include "cache/gc.h"
#include "cache/lmdb_env.h"
#include "cache/metadata_store.h"
#include "cache/records.h"
#include "cache/unit_store.h"
#include "cache/verify.h"

namespace imgfs::cache {

// ---- per-process, per-root state ----

// Everything one process keeps for one cache root. Cache objects opened on the same root in
// one process share it (LMDB forbids a second environment on the same files in one process).
using CoreKey = std::tuple<pid_t, dev_t, ino_t>;  // process, index directory

struct Core {
  Core(CoreKey k, std::string r, std::unique_ptr<LmdbEnv> e)
      : key(k),
        root(std::move(r)),
        env(std::move(e)),
        metadata(env.get(), root),
        units(env.get(), root),
        decoded(root),
        fetcher(&units),
        eviction(&units),
        verifier(&units, &metadata, &eviction) {}
  ~Core();

  // The store's written hook: runs the automatic gc when due (cache/auto_gc.h).
  void OnWritten(uint64_t bytes);

  const CoreKey key;
  const std::string root;
  std::unique_ptr<LmdbEnv> env;
  MetadataStore metadata;
  UnitStore units;
  DecodedFiles decoded;
  Fetcher fetcher;
  Eviction eviction;
  Verifier verifier;
  AutoGc auto_gc;
  std::weak_ptr<Core> self;  // set by Cache::Open: a pass runs over a Cache on this Core
};

namespace {

// The registry of open Cores. It must exist because LMDB allows one MDB_env per file per
// process: two Cache::Open calls on one root in one process (a mount's layer indexing and its
// reader, tests, `imgfs pull` of several images) must share the environment, and a closing
// Core must be gone before the next one opens the files again (closing an env drops the
// process's POSIX locks on them). The key holds the pid so that a forked child never reuses
// the parent's Core (an LMDB env must not cross fork()); the pthread_atfork handlers keep a
// fork that happens while another thread holds the registry lock from leaving the child's copy
// of the lock held forever.
Mutex& RegistryMutex() {
  static Mutex* mu = new Mutex;  // never destroyed: Cores may outlive statics
  return *mu;
}

std::map<CoreKey, std::weak_ptr<Core>>& Registry() {
  static auto* registry = new std::map<CoreKey, std::weak_ptr<Core>>;
  return *registry;
}

// Signalled when a Core has closed its environment and left the registry.
CondVar& RegistryClosed() {
  static auto* cv = new CondVar(&RegistryMutex());
  return *cv;
}

// NO_THREAD_SAFETY_ANALYSIS: the lock is taken in one handler and released in another.
void LockRegistry() NO_THREAD_SAFETY_ANALYSIS { RegistryMutex().Lock(); }
void UnlockRegistry() NO_THREAD_SAFETY_ANALYSIS { RegistryMutex().Unlock(); }

void InstallForkHandlers() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(LockRegistry, UnlockRegistry, UnlockRegistry); });
}

}  // namespace

Core::~Core() {
  // Closing an environment drops this process's POSIX locks on the lock file; it must not
  // overlap with another open of the same root in this process, so Open waits for the entry
  // to leave the registry.
  MutexLock lock(&RegistryMutex());
  env.reset();
  Registry().erase(key);
  RegistryClosed().SignalAll();
}

namespace {

class CacheImpl : public Cache {
 public:
  explicit CacheImpl(std::shared_ptr<Core> core) : core_(std::move(core)) {}

  const std::string& root() const override { return core_->root; }

  Status PutReference(std::string_view ref, std::string_view manifest_digest) override {
    return core_->metadata.PutReference(ref, manifest_digest);
  }
  Result<ReferenceRecord> GetReference(std::string_view ref) override {
    return core_->metadata.GetReference(ref);
  }
  Result<std::vector<std::pair<std::string, ReferenceRecord>>> ListReferences(
      std::string_view prefix) override {
    return core_->metadata.ListReferences(prefix);
  }
  Status DeleteReference(std::string_view ref) override {
    return core_->metadata.DeleteReference(ref);
  }
  Status PutDocument(std::string_view digest, std::string_view media_type,
                     std::string_view bytes) override {
    return core_->metadata.PutDocument(digest, media_type, bytes);
  }
  Result<Document> GetDocument(std::string_view digest) override {
    return core_->metadata.GetDocument(digest);
  }
  Status PutLayerIndex(std::string_view blob_digest, std::string_view serialized) override {
    return core_->metadata.PutLayerIndex(blob_digest, serialized);
  }
  Result<std::string> GetLayerIndex(std::string_view blob_digest) override {
    return core_->metadata.GetLayerIndex(blob_digest);
  }

  Result<std::string> ReadUnit(const UnitRef& unit, BlobSource* source) override {
    return core_->fetcher.ReadUnit(unit, source);
  }
  Status FetchUnits(const std::vector<UnitRef>& units, BlobSource* source,
                    uint64_t max_request_bytes) override {
    return core_->fetcher.FetchUnits(units, source, max_request_bytes);
  }
  int FetchesInFlight() override { return core_->fetcher.FetchesInFlight(); }

  Result<int> OpenDecodedFile(std::string_view blob_digest, std::string_view path,
                              uint64_t size) override {
    return core_->decoded.Open(blob_digest, path, size);
  }
  Result<bool> PutDecodedFile(std::string_view blob_digest, std::string_view path, uint64_t size,
                              const DecodedFiles::Fill& fill) override;

  Status PutUnit(const UnitRef& unit, std::string_view bytes) override;
  bool HasUnit(std::string_view blob, uint64_t coff, uint64_t clen) override;

  Result<std::unique_ptr<BlobWriter>> CreateBlobWriter(std::string_view blob_digest,
                                                       uint64_t size) override {
    return core_->units.CreateBlobWriter(blob_digest, size, core_);
  }
  BlobStats GetBlobStats(std::string_view blob_digest) override {
    return core_->eviction.GetBlobStats(blob_digest);
  }
  Eviction& eviction() override { return core_->eviction; }
  Verifier& verifier() override { return core_->verifier; }
  void SetSizeLimit(uint64_t max_bytes, ReferencedBlobsFn referenced) override {
    core_->auto_gc.Configure(max_bytes, std::move(referenced));
  }

 private:
  std::shared_ptr<Core> core_;
};

Status CacheImpl::PutUnit(const UnitRef& unit, std::string_view bytes) {
  IMGFS_RETURN_IF_ERROR(CheckUnit(unit));
  if (bytes.size() != unit.clen) {
    return Status::InvalidArgument("unit " + RangeText(unit) + " of " + unit.blob + " given " +
                                   std::to_string(bytes.size()) + " bytes");
  }
  std::string actual;
  if (!VerifyUnitBytes(unit, bytes, &actual)) {
    return Status::DigestMismatch("bytes " + RangeText(unit) + " of blob " + unit.blob +
                                  " do not verify (" + actual + ", expected " + Expectation(unit) +
                                  "); not cached");
  }
  return core_->units.Store(unit, bytes);
}

Result<bool> CacheImpl::PutDecodedFile(std::string_view blob_digest, std::string_view path,
                                       uint64_t size, const DecodedFiles::Fill& fill) {
  // A decoded file only speeds reads up: under a limit it may take the room of other decoded
  // files, never of units, which cost a fetch.
  if (const uint64_t limit = core_->auto_gc.max_bytes(); limit != 0) {
    if (size > limit) return false;
    GcPolicy policy;
    policy.max_bytes = limit - size;
    policy.decoded_files_only = true;
    IMGFS_ASSIGN_OR_RETURN(GcReport report, CollectGarbage(*this, {}, policy));
    if (report.bytes_after > limit - size) return false;
  }
  IMGFS_RETURN_IF_ERROR(core_->decoded.Write(blob_digest, path, size, fill));
  core_->OnWritten(size);
  return true;
}

bool CacheImpl::HasUnit(std::string_view blob, uint64_t coff, uint64_t clen) {
  if (!ValidateDigest(blob).ok() || clen == 0 || clen > kMaxUnitBytes ||
      coff > (uint64_t{1} << 62)) {
    return false;
  }
  Result<bool> r = core_->units.IsPublished(blob, coff, clen, nullptr);
  return r.ok() && *r;
}

}  // namespace

void Core::OnWritten(uint64_t bytes) {
  if (!auto_gc.NoteWritten(bytes)) return;
  // The writer holds a Cache on this Core, so it is alive.
  CacheImpl cache(self.lock());
  auto_gc.RunPasses(cache);
}

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
      return Status::IoError("cache " + root + ": " + dir +
                             " is not writable: " + std::strerror(errno) + hint);
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
    MutexLock lock(&RegistryMutex());
    for (;;) {
      auto it = Registry().find(key);
      if (it == Registry().end()) break;
      core = it->second.lock();
      if (core) break;
      RegistryClosed().Wait();  // the last user is closing it right now
    }
    if (!core) {
      auto env = LmdbEnv::Open(index_dir, root);
      if (!env.ok()) return env.status();
      core = std::make_shared<Core>(key, root, std::move(env).value());
      core->self = core;
      Core* raw = core.get();
      core->units.SetWrittenHook([raw](uint64_t bytes) { raw->OnWritten(bytes); });
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
