// imgfs cache verify: everything stored re-checked against the digests it was stored under,
// what fails dropped (cache/verify.h) and reported, one line each on stdout, then a summary.
// Exit status 1 when anything failed, 0 when the cache is clean.
//
// The cache knows blobs, units and digests; the layer formats are above it, so the checks it
// cannot make itself come from here: a layer index must deserialize (fs::LayerIndex, which
// validates it) and describe its blob, and a unit recorded without a sha256 (eStargz,
// zstd:chunked) is decoded and its chunks checked against the digests its layer index holds,
// by the same UnitRef::verify a mount uses (fs::ImageLayers).
#include <cstdio>
#include <map>
#include <memory>
#include <utility>

#include "cache/cache.h"
#include "cache/verify.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/pull_output.h"
#include "fs/layer/layer_index.h"
#include "fs/tree/image_layers.h"

namespace imgfs::cli {
namespace {

Status CheckLayerIndex(std::string_view blob_digest, std::string_view serialized) {
  IMGFS_ASSIGN_OR_RETURN(fs::LayerIndex index, fs::LayerIndex::Deserialize(serialized));
  if (index.blob_digest != blob_digest) {
    return Status::Corrupt("it describes blob " + index.blob_digest);
  }
  return Status::Ok();
}

// The checks of units stored without a sha256, from their blob's layer index. The verifier
// walks blob by blob, so one blob's index is kept at a time.
class TocUnitChecks {
 public:
  explicit TocUnitChecks(cache::Cache* cache) : cache_(cache) {}

  Result<cache::VerifyHooks::UnitCheck> For(std::string_view blob, uint64_t coff, uint64_t clen) {
    if (blob != blob_) Load(blob);
    IMGFS_RETURN_IF_ERROR(load_status_);
    auto it = unit_at_.find(coff);
    const fs::LayerIndex* index = layers_->layer(0);
    if (it == unit_at_.end() || index->units[it->second].clen != clen ||
        !index->units[it->second].sha256.empty()) {
      return Status::NotFound("its layer index has no unit at offset " + std::to_string(coff) +
                              " checked by decoded chunk digests");
    }
    cache::UnitRef ref = layers_->MakeUnitRef(0, it->second);
    // The check refers into `layers`: it keeps them alive.
    return cache::VerifyHooks::UnitCheck([layers = layers_, verify = std::move(ref.verify)](
                                             std::string_view bytes) { return verify(bytes); });
  }

 private:
  void Load(std::string_view blob) {
    blob_ = std::string(blob);
    layers_.reset();
    unit_at_.clear();
    load_status_ = Status::Ok();
    Result<std::string> bytes = cache_->GetLayerIndex(blob);
    Result<fs::LayerIndex> index = bytes.ok() ? fs::LayerIndex::Deserialize(*bytes)
                                              : Result<fs::LayerIndex>(bytes.status());
    if (!index.ok()) {
      load_status_ = Status::NotFound("no usable layer index to check it against (" +
                                      index.status().message() + ")");
      return;
    }
    for (uint32_t i = 0; i < index->units.size(); ++i) unit_at_[index->units[i].coff] = i;
    layers_ = std::make_shared<const fs::ImageLayers>(
        std::vector<std::shared_ptr<const fs::LayerIndex>>{
            std::make_shared<const fs::LayerIndex>(std::move(index).value())});
  }

  cache::Cache* const cache_;
  std::string blob_;
  Status load_status_;
  std::shared_ptr<const fs::ImageLayers> layers_;
  std::map<uint64_t, uint32_t> unit_at_;  // coff -> unit
};

}  // namespace

int RunCacheVerify(const CacheVerifyOptions& options) {
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  TocUnitChecks toc_checks(cache->get());
  cache::VerifyHooks hooks;
  hooks.check_layer_index = CheckLayerIndex;
  hooks.unit_verifier = [&](std::string_view blob, uint64_t coff, uint64_t clen) {
    return toc_checks.For(blob, coff, clen);
  };
  auto report = (*cache)->verifier().Verify(hooks, [](const cache::VerifyFailure& f) {
    std::printf("%s\n", f.ToString().c_str());
    std::fflush(stdout);
  });
  if (!report.ok()) return Fail(report.status());
  size_t not_dropped = 0;
  for (const cache::VerifyFailure& f : report->failures) not_dropped += f.dropped.ok() ? 0 : 1;
  std::string failed = report->failures.empty()
                           ? "all good"
                           : std::to_string(report->failures.size()) + " failed, " +
                                 std::to_string(report->failures.size() - not_dropped) + " dropped";
  std::printf(
      "Verified %llu complete blobs, %llu units and %llu decoded files (%s), %llu layer "
      "indexes, %llu documents, %llu references: %s\n",
      static_cast<unsigned long long>(report->complete_blobs),
      static_cast<unsigned long long>(report->units),
      static_cast<unsigned long long>(report->decoded_files),
      HumanSize(static_cast<double>(report->bytes)).c_str(),
      static_cast<unsigned long long>(report->layer_indexes),
      static_cast<unsigned long long>(report->documents),
      static_cast<unsigned long long>(report->references), failed.c_str());
  return report->failures.empty() ? 0 : 1;
}

}  // namespace imgfs::cli
