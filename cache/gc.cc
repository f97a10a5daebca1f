#include "cache/gc.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "cache/blob_files.h"

namespace imgfs::cache {
namespace {

// At most this many plans per pass: a plan's estimate of a punched unit's blocks can fall a
// little short (blocks shared with a neighbouring unit stay), and the next plan finishes.
constexpr int kMaxPlansPerPass = 3;

// flock(2) on <root>/gc.lock for as long as it lives.
class GcLock {
 public:
  static Result<GcLock> Take(const std::string& root) {
    std::string path = root + "/gc.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus("cannot open", path, errno);
    int rc;
    do {
      rc = ::flock(fd, LOCK_EX);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
      int err = errno;
      ::close(fd);
      return ErrnoStatus("cannot lock", path, err);
    }
    return GcLock(fd);
  }
  GcLock(GcLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  GcLock& operator=(GcLock&&) = delete;
  ~GcLock() {
    if (fd_ >= 0) ::close(fd_);  // drops the lock
  }

 private:
  explicit GcLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

uint64_t DiskBytes(const std::vector<BlobUsage>& blobs) {
  uint64_t total = 0;
  for (const BlobUsage& b : blobs) total += b.disk_bytes;
  return total;
}

std::vector<GcAction> PlanGc(
    const std::vector<BlobUsage>& blobs, const std::set<std::string>& pinned,
    const std::set<std::string>& referenced, const GcPolicy& policy,
    const std::function<std::vector<UnitUsage>(const std::string&)>& units_of) {
  uint64_t total = DiskBytes(blobs);
  std::vector<const BlobUsage*> candidates;
  for (const BlobUsage& b : blobs) {
    if (!pinned.count(b.digest)) candidates.push_back(&b);
  }
  auto is_referenced = [&](const BlobUsage* b) { return referenced.count(b->digest) > 0; };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const BlobUsage* a, const BlobUsage* b) {
                     bool ra = is_referenced(a), rb = is_referenced(b);
                     if (ra != rb) return !ra;  // the unreferenced first
                     if (a->access_unix != b->access_unix) return a->access_unix < b->access_unix;
                     return a->digest < b->digest;
                   });
  std::vector<GcAction> plan;
  std::set<std::string> decoded_dropped;
  // What `b` still takes once the plan so far has run.
  auto left = [&](const BlobUsage* b) {
    return b->disk_bytes - (decoded_dropped.count(b->digest) ? b->decoded_bytes : 0);
  };
  auto drop = [&](const BlobUsage* b) {
    const uint64_t bytes = left(b);
    plan.push_back({b->digest, true, {}, bytes, is_referenced(b)});
    total -= std::min(total, bytes);
  };
  size_t next = 0;
  if (policy.drop_unreferenced) {
    while (next < candidates.size() && !is_referenced(candidates[next])) drop(candidates[next++]);
  }
  if (!policy.max_bytes) return plan;
  const uint64_t limit = *policy.max_bytes;
  // Decoded files first, in the same order: derived bytes (cache/decoded_files.h), made again
  // from the units without a fetch, so none of them is worth a unit of any image.
  for (size_t i = next; i < candidates.size() && total > limit; ++i) {
    const BlobUsage* b = candidates[i];
    if (b->decoded_bytes == 0) continue;
    GcAction action{b->digest, false, {}, b->decoded_bytes, is_referenced(b)};
    action.decoded_only = true;
    plan.push_back(std::move(action));
    decoded_dropped.insert(b->digest);
    total -= std::min(total, b->decoded_bytes);
  }
  if (policy.decoded_files_only) return plan;
  for (; next < candidates.size() && total > limit; ++next) {
    const BlobUsage* b = candidates[next];
    if (left(b) == 0) continue;  // a record without bytes frees nothing
    const uint64_t need = total - limit;
    if (b->complete || b->units_present < 2 || left(b) <= need) {
      drop(b);
      continue;
    }
    std::vector<UnitUsage> units = units_of(b->digest);
    std::sort(units.begin(), units.end(),
              [](const UnitUsage& x, const UnitUsage& y) { return x.coff > y.coff; });
    GcAction trim{b->digest, false, {}, 0, is_referenced(b)};
    for (const UnitUsage& u : units) {
      if (trim.bytes >= need) break;
      trim.punch_coffs.push_back(u.coff);
      trim.bytes += u.clen;
    }
    if (trim.punch_coffs.size() == units.size()) {
      drop(b);  // every unit would go: the whole blob goes
      continue;
    }
    total -= std::min(total, trim.bytes);
    plan.push_back(std::move(trim));
  }
  return plan;
}

Result<GcReport> CollectGarbage(Cache& cache, const std::set<std::string>& referenced,
                                const GcPolicy& policy) {
  Eviction& eviction = cache.eviction();
  IMGFS_ASSIGN_OR_RETURN(GcLock lock, GcLock::Take(cache.root()));
  GcReport report;
  IMGFS_ASSIGN_OR_RETURN(std::vector<BlobUsage> blobs, eviction.ListBlobs());
  report.bytes_before = DiskBytes(blobs);
  for (int round = 0; round < kMaxPlansPerPass; ++round) {
    IMGFS_ASSIGN_OR_RETURN(std::set<std::string> pinned, eviction.PinnedBlobs());
    std::vector<GcAction> plan = PlanGc(blobs, pinned, referenced, policy,
                                        [&](const std::string& digest) {
                                          auto units = eviction.ListUnits(digest);
                                          return units.ok() ? *units : std::vector<UnitUsage>{};
                                        });
    if (plan.empty()) break;
    bool progress = false;
    for (GcAction& action : plan) {
      // A mount may have pinned the blob since the plan was made.
      IMGFS_ASSIGN_OR_RETURN(std::set<std::string> pinned_now, eviction.PinnedBlobs());
      if (pinned_now.count(action.digest)) {
        ++report.skipped_pinned;
        continue;
      }
      Status s;
      if (action.whole) {
        s = eviction.DropBlob(action.digest);
      } else if (action.decoded_only) {
        s = eviction.DropDecodedFiles(action.digest);
      } else {
        // A trimmed blob's decoded files were an action of their own, earlier in the plan
        // (PlanGc drops every candidate's before it trims any).
        for (uint64_t coff : action.punch_coffs) {
          Status punched = eviction.PunchUnit(action.digest, coff);
          if (!punched.ok() && !punched.IsNotFound()) s = punched;
        }
      }
      if (!s.ok()) {
        IMGFS_LOG(kWarning, "cache gc: " << s.ToString());
        continue;
      }
      progress = true;
      report.done.push_back(std::move(action));
    }
    IMGFS_ASSIGN_OR_RETURN(blobs, eviction.ListBlobs());
    if (!progress || !policy.max_bytes || DiskBytes(blobs) <= *policy.max_bytes) break;
  }
  report.bytes_after = DiskBytes(blobs);
  IMGFS_ASSIGN_OR_RETURN(std::set<std::string> pinned, eviction.PinnedBlobs());
  for (const BlobUsage& b : blobs) {
    if (pinned.count(b.digest)) report.pinned_bytes += b.disk_bytes;
  }
  return report;
}

}  // namespace imgfs::cache
