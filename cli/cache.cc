// imgfs cache df and imgfs cache gc (commands.h): the cache's disk usage in docker system
// df's shape, and the eviction policy of cache/gc.h run by hand.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cache/eviction.h"
#include "cache/gc.h"
#include "cli/cache_usage.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pull_output.h"

namespace imgfs::cli {
namespace {

struct Row {
  uint64_t total = 0;
  uint64_t active = 0;
  uint64_t size = 0;         // disk bytes
  uint64_t reclaimable = 0;  // disk bytes of what is not active
};

struct Usage {
  Row images;  // active: mounted now (a blob pinned); reclaimable: blobs a limit may evict
  Row blobs;   // active: used by an image or pinned; reclaimable: what gc frees, no limit
  uint64_t index_bytes = 0;
};

uint64_t FileDiskBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

Result<Usage> MeasureUsage(cache::Cache& cache) {
  IMGFS_ASSIGN_OR_RETURN(std::vector<cache::BlobUsage> blobs, cache.eviction().ListBlobs());
  IMGFS_ASSIGN_OR_RETURN(std::set<std::string> pinned, cache.eviction().PinnedBlobs());
  IMGFS_ASSIGN_OR_RETURN(std::vector<CachedImage> images, CachedImages(cache));
  std::map<std::string, uint64_t> disk;
  for (const cache::BlobUsage& b : blobs) disk[b.digest] = b.disk_bytes;
  std::set<std::string> referenced;
  Usage u;
  u.images.total = images.size();
  for (const CachedImage& image : images) {
    bool active = false;
    for (const std::string& d : image.blobs) {
      active = active || pinned.count(d) > 0;
      referenced.insert(d);
    }
    u.images.active += active ? 1 : 0;
  }
  for (const std::string& d : referenced) {
    auto it = disk.find(d);
    if (it == disk.end()) continue;
    u.images.size += it->second;
    if (!pinned.count(d)) u.images.reclaimable += it->second;
  }
  u.blobs.total = blobs.size();
  for (const cache::BlobUsage& b : blobs) {
    bool active = referenced.count(b.digest) > 0 || pinned.count(b.digest) > 0;
    u.blobs.active += active ? 1 : 0;
    u.blobs.size += b.disk_bytes;
    if (!active) u.blobs.reclaimable += b.disk_bytes;
  }
  u.index_bytes = FileDiskBytes(cache.root() + "/index/data.mdb");
  return u;
}

std::string Size(uint64_t bytes) { return HumanSize(static_cast<double>(bytes)); }

std::string Reclaimable(const Row& r) {
  std::string out = Size(r.reclaimable);
  if (r.size > 0) out += " (" + std::to_string(r.reclaimable * 100 / r.size) + "%)";
  return out;
}

nlohmann::json RowJson(const Row& r) {
  return {
      {"total", r.total}, {"active", r.active}, {"size", r.size}, {"reclaimable", r.reclaimable}};
}

}  // namespace

int RunCacheDf(const CacheOptions& options) {
  const uint64_t limit = options.common.cache_max_size;
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  auto usage = MeasureUsage(**cache);
  if (!usage.ok()) return Fail(usage.status());
  const Usage& u = *usage;
  if (options.format == "json") {
    nlohmann::json out = {{"root", (*cache)->root()},
                          {"limit", limit},
                          {"disk_bytes", u.blobs.size + u.index_bytes},
                          {"images", RowJson(u.images)},
                          {"blobs", RowJson(u.blobs)},
                          {"index", {{"size", u.index_bytes}}}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  const char* kFormat = "%-10s%-10s%-10s%-12s%s\n";
  std::printf(kFormat, "TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE");
  std::printf(kFormat, "Images", std::to_string(u.images.total).c_str(),
              std::to_string(u.images.active).c_str(), Size(u.images.size).c_str(),
              Reclaimable(u.images).c_str());
  std::printf(kFormat, "Blobs", std::to_string(u.blobs.total).c_str(),
              std::to_string(u.blobs.active).c_str(), Size(u.blobs.size).c_str(),
              Reclaimable(u.blobs).c_str());
  std::printf(kFormat, "Index", "-", "-", Size(u.index_bytes).c_str(), "0B");
  std::printf("\nCache %s: %s on disk, limit %s\n", (*cache)->root().c_str(),
              Size(u.blobs.size + u.index_bytes).c_str(),
              limit == 0 ? "none" : Size(limit).c_str());
  return 0;
}

int RunCacheGc(const CacheOptions& options) {
  cache::GcPolicy policy;
  policy.drop_unreferenced = true;
  if (options.max_size) {
    policy.max_bytes = *options.max_size;
  } else if (options.common.cache_max_size > 0) {
    policy.max_bytes = options.common.cache_max_size;
  }
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  auto referenced = ReferencedBlobs(**cache);
  if (!referenced.ok()) return Fail(referenced.status());
  auto report = cache::CollectGarbage(**cache, *referenced, policy);
  if (!report.ok()) return Fail(report.status());
  for (const cache::GcAction& a : report->done) {
    std::string why = a.referenced ? "least recently used" : "used by no image";
    if (a.whole) {
      std::printf("Deleted: %s (%s, %s)\n", a.digest.c_str(), Size(a.bytes).c_str(), why.c_str());
    } else if (a.decoded_only) {
      std::printf("Deleted decoded files: %s (%s)\n", a.digest.c_str(), Size(a.bytes).c_str());
    } else {
      std::printf("Trimmed: %s (%zu units, %s, %s)\n", a.digest.c_str(), a.punch_coffs.size(),
                  Size(a.bytes).c_str(), why.c_str());
    }
  }
  if (report->skipped_pinned > 0) {
    std::printf("Skipped: %d blobs a mount pinned meanwhile\n", report->skipped_pinned);
  }
  std::printf("Total reclaimed space: %s\n", Size(report->freed()).c_str());
  std::printf("Cache size: %s", Size(report->bytes_after).c_str());
  if (policy.max_bytes) std::printf(" (limit %s)", Size(*policy.max_bytes).c_str());
  std::printf("\n");
  if (policy.max_bytes && report->bytes_after > *policy.max_bytes) {
    std::cerr << "imgfs: the cache stays above its limit: live mounts pin "
              << Size(report->pinned_bytes) << " of it\n";
  }
  return 0;
}

}  // namespace imgfs::cli
