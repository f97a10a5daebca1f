#include <iostream>
#include <nlohmann/json.hpp>

#include "cache/cache.h"
#include "cli/commands.h"
#include "cli/common.h"

namespace imgfs::cli {
namespace {

void PrintJson(const registry::ResolvedImage& image, const nlohmann::json& config) {
  nlohmann::json out;
  out["reference"] = image.ref.String();
  out["digest"] = image.manifest.digest;
  out["mediaType"] = image.manifest.media_type;
  if (image.index) {
    out["index"] = {{"digest", image.index->digest}, {"mediaType", image.index->media_type}};
  }
  out["platform"] = image.platform.String();
  out["layers"] = nlohmann::json::array();
  for (const auto& layer : image.parsed.layers) {
    nlohmann::json l = {
        {"mediaType", layer.media_type}, {"size", layer.size}, {"digest", layer.digest}};
    if (!layer.annotations.empty()) l["annotations"] = layer.annotations;
    out["layers"].push_back(l);
  }
  out["config"] = config.is_discarded() ? nlohmann::json(image.config) : config;
  std::cout << out.dump(2) << "\n";
}

void PrintText(const registry::ResolvedImage& image, const nlohmann::json& config) {
  uint64_t total = 0;
  for (const auto& layer : image.parsed.layers) total += layer.size;
  std::cout << "Reference: " << image.ref.String() << "\n";
  if (image.index) std::cout << "Index:     " << image.index->digest << "\n";
  std::cout << "Digest:    " << image.manifest.digest << "\n"
            << "MediaType: " << image.manifest.media_type << "\n"
            << "Platform:  " << image.platform.String() << "\n"
            << "Layers:    " << image.parsed.layers.size() << " (" << total
            << " bytes compressed)\n";
  for (const auto& layer : image.parsed.layers) {
    std::cout << "  " << layer.digest << "  " << layer.size << "  " << layer.media_type << "\n";
  }
  if (!config.is_discarded() && config.contains("config") && config["config"].is_object()) {
    std::cout << "Config:\n" << config["config"].dump(2) << "\n";
  }
}

}  // namespace

int RunInspect(const InspectOptions& options) {
  auto target = ParseTarget(options.image, options.common);
  if (!target.ok()) return Fail(target.status());
  if (options.format != "text" && options.format != "json") {
    return Fail(Status::InvalidArgument("--format must be text or json"));
  }
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  registry::Client client(DefaultClientOptions(options.common));
  auto image = ResolveImage(target->ref, target->platform, target->policy, &client, cache->get());
  if (!image.ok()) return Fail(image.status());
  if (Status s = CheckPlatform(*image, *target); !s.ok()) return Fail(s);

  nlohmann::json config = nlohmann::json::parse(image->config, nullptr, false);
  if (options.format == "json") {
    PrintJson(*image, config);
  } else {
    PrintText(*image, config);
  }
  return 0;
}

}  // namespace imgfs::cli
