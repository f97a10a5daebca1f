// imgfs images: the images `imgfs pull` completed, from the cache's pulled records (see
// PulledKey), with what the cached documents say of them. No network.
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cache/eviction.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pull_output.h"

namespace imgfs::cli {
namespace {

struct Row {
  registry::Reference ref;  // its tag is "" for an image pulled by digest only
  std::string digest;
  std::string platform = "?";
  uint64_t size = 0;  // compressed bytes of its layers
  int64_t pulled_unix = 0;
  int64_t last_used_unix = 0;  // the latest access to any of its layers, or the pull
};

}  // namespace

int RunImages(const ImagesOptions& options) {
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  auto records = (*cache)->ListReferences(kPulledPrefix);
  if (!records.ok()) return Fail(records.status());
  auto blobs = (*cache)->eviction().ListBlobs();
  std::map<std::string, int64_t> access;
  if (blobs.ok()) {
    for (const cache::BlobUsage& b : *blobs) access[b.digest] = b.access_unix;
  }
  registry::Client client(DefaultClientOptions(options.common));  // never asked: --pull never
  registry::Platform host = registry::Platform::Host();

  std::vector<Row> rows;
  std::set<std::string> tagged;  // repo@digest of the rows with a tag
  for (const auto& [key, record] : *records) {
    auto ref = registry::Reference::Parse(key.substr(kPulledPrefix.size()));
    if (!ref.ok()) continue;
    Row row{*ref, record.manifest_digest};
    row.pulled_unix = row.last_used_unix = record.fetched_unix;
    registry::Reference by_digest = *ref;
    by_digest.tag.clear();
    by_digest.digest = record.manifest_digest;
    auto image = ResolveImage(by_digest, host, PullPolicy::kNever, &client, cache->get());
    if (image.ok()) {
      row.platform = image->platform.String();
      for (const registry::Descriptor& l : image->parsed.layers) {
        row.size += l.size;
        row.last_used_unix = std::max(row.last_used_unix, access[l.digest]);
      }
    }
    if (!ref->tag.empty()) tagged.insert(ref->Repo() + "@" + record.manifest_digest);
    rows.push_back(std::move(row));
  }
  // A digest record that a tag also names is that tag's row (docker shows it once).
  std::vector<Row> shown;
  for (Row& row : rows) {
    if (row.ref.tag.empty() && tagged.count(row.ref.Repo() + "@" + row.digest)) continue;
    shown.push_back(std::move(row));
  }

  if (options.format == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : shown) {
      out.push_back({{"repository", FamiliarName(r.ref)},
                     {"tag", r.ref.tag},
                     {"reference", r.ref.String()},
                     {"digest", r.digest},
                     {"platform", r.platform},
                     {"size", r.size},
                     {"pulled", r.pulled_unix},
                     {"last_used", r.last_used_unix}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("%-40s  %-12s  %-19s  %-14s  %10s  %s\n", "REPOSITORY", "TAG", "DIGEST", "PLATFORM",
              "SIZE", "LAST USED (UTC)");
  for (const Row& r : shown) {
    std::printf("%-40s  %-12s  %-19s  %-14s  %10s  %s\n", FamiliarName(r.ref).c_str(),
                r.ref.tag.empty() ? "<none>" : r.ref.tag.c_str(), r.digest.substr(0, 19).c_str(),
                r.platform.c_str(), HumanSize(static_cast<double>(r.size)).c_str(),
                UtcMinute(r.last_used_unix).c_str());
  }
  return 0;
}

}  // namespace imgfs::cli
