// Config's registry entries and the environment and flags laid over the files (sources 5 and 6
// of config.h); the files themselves are read in config_files.cc.
#include "cli/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "cli/config_registries.h"
#include "registry/http.h"
#include "registry/reference.h"

namespace imgfs::cli {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

std::string NormalizeLocation(std::string loc) {
  if (size_t p = loc.find("://"); p != std::string::npos) loc = loc.substr(p + 3);
  while (!loc.empty() && loc.back() == '/') loc.pop_back();
  if (loc == "index.docker.io" || loc == "registry-1.docker.io" || loc == "index.docker.io/v1") {
    return "docker.io";
  }
  return loc;
}

std::string MirrorUrl(std::string loc, bool insecure) {
  while (!loc.empty() && loc.back() == '/') loc.pop_back();
  if (loc.find("://") != std::string::npos) return loc;
  std::string host = loc.substr(0, loc.find('/'));
  return (insecure || registry::IsLoopbackHost(host) ? "http://" : "https://") + loc;
}

RegistryConfig& RegistryEntry(Config* config, const std::string& location) {
  std::string key = NormalizeLocation(location);
  for (RegistryConfig& r : config->registries) {
    if (r.location == key) return r;
  }
  config->registries.push_back(RegistryConfig{key, {}, {}, ""});
  return config->registries.back();
}

void ApplyMirrors(const MirrorLists& lists, Config* config) {
  for (const auto& [location, list] : lists) {
    RegistryConfig& r = RegistryEntry(config, location);
    r.mirrors = list.first;
    r.mirrors_source = list.second;
  }
}

void SortRegistries(Config* config) {
  std::sort(
      config->registries.begin(), config->registries.end(),
      [](const RegistryConfig& a, const RegistryConfig& b) { return a.location < b.location; });
}

const RegistryConfig* Config::Registry(const std::string& location) const {
  std::string key = NormalizeLocation(location);
  for (const RegistryConfig& r : registries) {
    if (r.location == key) return &r;
  }
  return nullptr;
}

Status OverlayFlags(const CommonOptions& common, Config* config) {
  auto given = [&](const char* flag) { return common.flags_given.count(flag) > 0; };
  if (std::string env = Env("IMGFS_CACHE"); !env.empty())
    config->cache_dir = {env, "env IMGFS_CACHE"};
  if (given("--cache")) config->cache_dir = {common.cache_dir, "flag --cache"};
  if (std::string env = Env("IMGFS_CACHE_MAX_SIZE"); !env.empty()) {
    Result<uint64_t> bytes = ParseByteSize(env);
    if (!bytes.ok()) return bytes.status().WithContext("$IMGFS_CACHE_MAX_SIZE");
    config->cache_max_size = {*bytes, "env IMGFS_CACHE_MAX_SIZE"};
  }
  if (given("--cache-max-size")) {
    config->cache_max_size = {common.cache_max_size, "flag --cache-max-size"};
  }
  if (given("--platform")) config->platform = {common.platform, "flag --platform"};
  if (given("--pull")) config->pull_policy = {common.pull, "flag --pull"};
  if (given("--stall-timeout")) {
    config->stall_timeout_s = {common.stall_timeout_s, "flag --stall-timeout"};
  }
  MirrorLists mirrors;
  for (const std::string& flag : common.registry_mirrors) {
    // "[REGISTRY=]URL": docker's --registry-mirror names docker.io's.
    std::string location = "docker.io";
    std::string url = flag;
    size_t eq = flag.find('=');
    size_t scheme = flag.find("://");
    if (eq != std::string::npos && (scheme == std::string::npos || eq < scheme)) {
      location = flag.substr(0, eq);
      url = flag.substr(eq + 1);
    }
    url = MirrorUrl(url, false);
    if (location.empty() || registry::UrlSchemeAndAuthority(url).second.empty()) {
      return Status::InvalidArgument("--registry-mirror '" + flag +
                                     "': expected [REGISTRY=]URL, e.g. https://mirror.example.com");
    }
    auto& entry = mirrors[NormalizeLocation(location)];
    entry.first.push_back(url);
    entry.second = "flag --registry-mirror";
  }
  ApplyMirrors(mirrors, config);
  for (const std::string& entry : common.trust_index_from) {
    if (entry.empty()) return Status::InvalidArgument("--trust-index-from needs REGISTRY[/REPO]");
    config->trust_index_from.push_back({entry, "flag --trust-index-from"});
  }
  for (const std::string& host : common.insecure_registries) {
    if (host.empty()) return Status::InvalidArgument("--insecure-registry needs a HOST[:PORT]");
    RegistryEntry(config, host).insecure = {true, "flag --insecure-registry"};
  }
  SortRegistries(config);
  return Status::Ok();
}

void ApplyConfig(const Config& config, CommonOptions* common) {
  common->cache_dir = config.cache_dir.value;
  common->cache_max_size = config.cache_max_size.value;
  common->platform = config.platform.value;
  common->pull = config.pull_policy.value;
  common->stall_timeout_s = config.stall_timeout_s.value;
  common->registry_mirrors.clear();
  common->insecure_registries.clear();
  common->trust_index_from.clear();
  for (const Sourced<std::string>& t : config.trust_index_from) {
    common->trust_index_from.push_back(t.value);
  }
  for (const RegistryConfig& r : config.registries) {
    for (const std::string& url : r.mirrors)
      common->registry_mirrors.push_back(r.location + "=" + url);
    if (r.insecure.value) common->insecure_registries.push_back(r.location);
  }
}

Result<Config> ResolveConfig(CommonOptions* common) {
  IMGFS_ASSIGN_OR_RETURN(Config config, LoadConfig(ConfigPaths::FromEnvironment()));
  IMGFS_RETURN_IF_ERROR(OverlayFlags(*common, &config));
  ApplyConfig(config, common);
  return config;
}

Result<uint64_t> ParseByteSize(const std::string& text) {
  static const std::pair<const char*, double> kUnits[] = {{"", 1},
                                                          {"b", 1},
                                                          {"k", 1024.0},
                                                          {"kib", 1024.0},
                                                          {"kb", 1e3},
                                                          {"m", 1048576.0},
                                                          {"mib", 1048576.0},
                                                          {"mb", 1e6},
                                                          {"g", 1073741824.0},
                                                          {"gib", 1073741824.0},
                                                          {"gb", 1e9},
                                                          {"t", 1099511627776.0},
                                                          {"tib", 1099511627776.0},
                                                          {"tb", 1e12}};
  size_t end = 0;
  while (end < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[end])) || text[end] == '.')) {
    ++end;
  }
  std::string number = text.substr(0, end);
  std::string unit = text.substr(end);
  unit.erase(0, unit.find_first_not_of(' '));
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  char* stop = nullptr;
  double value = number.empty() ? -1 : std::strtod(number.c_str(), &stop);
  for (const auto& [name, factor] : kUnits) {
    if (unit != name || value < 0 || stop != number.c_str() + number.size()) continue;
    double bytes = std::floor(value * factor);
    if (bytes >= 1.8e19) break;
    return static_cast<uint64_t>(bytes);
  }
  return Status::InvalidArgument("'" + text + "' is not a size (e.g. 20GiB, 500MB, 1048576)");
}

}  // namespace imgfs::cli
