// `imgfs info`: the effective configuration, and where each value came from.
#include <iostream>

#include "cache/cache.h"
#include "cli/config.h"
#include "registry/platform.h"

namespace imgfs::cli {
namespace {

template <typename T>
void Line(const char* key, const T& value, const std::string& source) {
  std::cout << "  " << key << ": " << value << "  (" << source << ")\n";
}

}  // namespace

int RunInfo(const Config& config) {
  std::cout << "imgfs 0.1.0\nConfig files:\n";
  for (const auto& [path, state] : config.files) std::cout << "  " << path << ": " << state << "\n";
  std::cout << "Cache:\n";
  Line("dir", config.cache_dir.value.empty() ? cache::Cache::DefaultRoot() : config.cache_dir.value,
       config.cache_dir.source);
  Line("max_size",
       config.cache_max_size.value == 0 ? std::string("no limit")
                                        : std::to_string(config.cache_max_size.value) + " bytes",
       config.cache_max_size.source);
  std::cout << "Pull:\n";
  Line("platform",
       config.platform.value.empty() ? registry::Platform::Host().String() + " (this host's)"
                                     : config.platform.value,
       config.platform.source);
  Line("policy", config.pull_policy.value, config.pull_policy.source);
  Line("stall_timeout", std::to_string(config.stall_timeout_s.value) + " s",
       config.stall_timeout_s.source);
  std::cout << "Shared layer indexes trusted from (referrers):"
            << (config.trust_index_from.empty() ? " none\n" : "\n");
  for (const Sourced<std::string>& t : config.trust_index_from) {
    std::cout << "  " << t.value << "  (" << t.source << ")\n";
  }
  std::cout << "Registries:" << (config.registries.empty() ? " none configured\n" : "\n");
  for (const RegistryConfig& r : config.registries) {
    std::cout << "  " << r.location << "\n";
    for (const std::string& m : r.mirrors) {
      std::cout << "    mirror: " << m << "  (" << r.mirrors_source << ")\n";
    }
    if (r.insecure.source != "default") {
      std::cout << "    insecure: " << (r.insecure.value ? "true" : "false") << "  ("
                << r.insecure.source << ")\n";
    }
  }
  return 0;
}

}  // namespace imgfs::cli
