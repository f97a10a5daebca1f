#include "cli/stats.h"

#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "cli/common.h"
#include "fs/fuse/fuse_fs.h"

namespace imgfs::cli {

nlohmann::json MountStatsJson(const registry::ResolvedImage& image,
                              const std::vector<std::shared_ptr<const fs::LayerIndex>>& layers,
                              cache::Cache* cache, const MeteredBlobSource& source,
                              const fs::ContentReader& reader) {
  nlohmann::json out;
  out["reference"] = image.ref.String();
  out["digest"] = image.manifest.digest;
  out["readahead_idle"] = reader.IsIdle();
  out["decoded_lru_bytes"] = reader.lru_bytes_used();
  out["decoded_files_written"] = reader.decoded_files_written();
  out["decoded_files_failed"] = reader.decoded_files_failed();
  out["passthrough_opens"] = reader.passthrough_opens();
  out["layers"] = nlohmann::json::array();
  std::vector<fs::ContentReader::LayerStats> reads = reader.stats();
  uint64_t index_bytes = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const fs::LayerIndex& layer = *layers[i];
    const uint64_t layer_index_bytes = fs::LayerIndexMemoryBytes(layer);
    index_bytes += layer_index_bytes;
    uint64_t units_present = 0, unit_bytes = 0, unit_bytes_present = 0;
    for (const fs::Unit& unit : layer.units) {
      unit_bytes += unit.clen;
      if (cache->HasUnit(layer.blob_digest, unit.coff, unit.clen)) {
        ++units_present;
        unit_bytes_present += unit.clen;
      }
    }
    MeteredBlobSource::Counts fetched = source.Get(layer.blob_digest);
    nlohmann::json l = {
        {"digest", layer.blob_digest},
        {"format", layer.format},
        {"size", layer.blob_size},
        {"fetched_bytes", fetched.bytes},
        {"fetch_requests", fetched.requests},
        {"units_present", units_present},
        {"units_total", layer.units.size()},
        {"percent", unit_bytes == 0 ? 100.0 : 100.0 * unit_bytes_present / unit_bytes},
        {"index_entries", layer.entries.size()},
        {"index_bytes", layer_index_bytes},
    };
    if (i < reads.size()) {
      l["unit_decodes"] = reads[i].unit_decodes;
      l["lru_hits"] = reads[i].lru_hits;
      l["read_failures"] = reads[i].failures;
      l["bytes_read"] = reads[i].bytes_read;
      l["readahead_units"] = reads[i].readahead_units;
    }
    out["layers"].push_back(l);
  }
  out["index_bytes"] = index_bytes;
  return out;
}

int RunStats(const std::string& mountpoint, const std::string& format) {
  std::string value(1 << 16, '\0');
  ssize_t n;
  for (;;) {
    n = ::getxattr(mountpoint.c_str(), fs::kStatsXattr, value.data(), value.size());
    if (n >= 0 || errno != ERANGE) break;
    value.resize(value.size() * 4);
  }
  if (n < 0) {
    return Fail(Status::InvalidArgument(mountpoint + " is not an imgfs mount (" +
                                        std::strerror(errno) + ")"));
  }
  value.resize(static_cast<size_t>(n));
  nlohmann::json stats = nlohmann::json::parse(value, nullptr, false);
  if (stats.is_discarded()) return Fail(Status::Corrupt("the mount answered unreadable stats"));
  if (format == "json") {
    std::cout << stats.dump(2) << "\n";
    return 0;
  }
  std::cout << "Reference: " << stats.value("reference", "") << "\n"
            << "Digest:    " << stats.value("digest", "") << "\n";
  std::printf("%-19s  %-12s  %12s  %12s  %15s  %7s\n", "LAYER", "FORMAT", "SIZE", "FETCHED",
              "UNITS", "PRESENT");
  for (const auto& l : stats["layers"]) {
    std::string digest = l.value("digest", "");
    std::string units = std::to_string(l.value("units_present", 0)) + "/" +
                        std::to_string(l.value("units_total", 0));
    std::printf("%-19s  %-12s  %12llu  %12llu  %15s  %6.1f%%\n",
                digest.substr(0, std::min<size_t>(digest.size(), 19)).c_str(),
                l.value("format", "").c_str(),
                static_cast<unsigned long long>(l.value("size", 0ull)),
                static_cast<unsigned long long>(l.value("fetched_bytes", 0ull)), units.c_str(),
                l.value("percent", 0.0));
  }
  uint64_t entries = 0;
  for (const auto& l : stats["layers"]) entries += l.value("index_entries", 0ull);
  constexpr double kMiB = 1 << 20;
  std::printf("Memory:    layer indexes %.1f MiB (%llu entries), decoded units %.1f MiB\n",
              static_cast<double>(stats.value("index_bytes", 0ull)) / kMiB,
              static_cast<unsigned long long>(entries),
              static_cast<double>(stats.value("decoded_lru_bytes", 0ull)) / kMiB);
  return 0;
}

}  // namespace imgfs::cli
