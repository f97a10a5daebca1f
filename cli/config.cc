#include "cli/config.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cli/image_resolver.h"
#include "registry/http.h"
#include "registry/platform.h"
#include "registry/reference.h"

namespace imgfs::cli {
namespace {

std::optional<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

// "https://index.docker.io/v1/" -> "docker.io"; "host:5000/" -> "host:5000".
std::string NormalizeLocation(std::string loc) {
  if (size_t p = loc.find("://"); p != std::string::npos) loc = loc.substr(p + 3);
  while (!loc.empty() && loc.back() == '/') loc.pop_back();
  if (loc == "index.docker.io" || loc == "registry-1.docker.io" || loc == "index.docker.io/v1") {
    return "docker.io";
  }
  return loc;
}

// A mirror location as registries.conf writes it ("host:port") or docker does (a URL).
std::string MirrorUrl(std::string loc, bool insecure) {
  while (!loc.empty() && loc.back() == '/') loc.pop_back();
  if (loc.find("://") != std::string::npos) return loc;
  std::string host = loc.substr(0, loc.find('/'));
  return (insecure || registry::IsLoopbackHost(host) ? "http://" : "https://") + loc;
}

RegistryConfig& Entry(Config* config, const std::string& location) {
  std::string key = NormalizeLocation(location);
  for (RegistryConfig& r : config->registries) {
    if (r.location == key) return r;
  }
  config->registries.push_back(RegistryConfig{key, {}, {}, ""});
  return config->registries.back();
}

// Mirrors named by one source, per registry: each replaces what weaker sources said.
using MirrorLists = std::map<std::string, std::pair<std::vector<std::string>, std::string>>;

void ApplyMirrors(const MirrorLists& lists, Config* config) {
  for (const auto& [location, list] : lists) {
    RegistryConfig& r = Entry(config, location);
    r.mirrors = list.first;
    r.mirrors_source = list.second;
  }
}

// ---- TOML: registries.conf and imgfs's config.toml ----

class TomlReader {
 public:
  TomlReader(std::string path, bool strict) : path_(std::move(path)), strict_(strict) {}

  std::string Where(const toml::node& n) const {
    return path_ + ":" + std::to_string(n.source().begin.line);
  }

  Status Error(const toml::node& n, const std::string& what) const {
    return Status::InvalidArgument(Where(n) + ": " + what);
  }

  // Unknown keys are errors in imgfs's own file (a typo must not be ignored silently).
  Status CheckKeys(const toml::table& t, const std::string& prefix,
                   std::initializer_list<std::string_view> known) const {
    if (!strict_) return Status::Ok();
    for (const auto& [key, node] : t) {
      if (std::find(known.begin(), known.end(), key.str()) == known.end()) {
        return Error(node, "unknown key '" + prefix + std::string(key.str()) + "'");
      }
    }
    return Status::Ok();
  }

  template <typename T>
  Result<std::optional<T>> Get(const toml::table& t, std::string_view key, const char* type,
                               const std::string& name) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return std::optional<T>();
    std::optional<T> v = n->value_exact<T>();
    if (!v) return Error(*n, "'" + name + "' must be " + type);
    return v;
  }

  const toml::table* Table(const toml::table& t, std::string_view key, Status* st) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return nullptr;
    if (!n->is_table()) *st = Error(*n, "'" + std::string(key) + "' must be a table");
    return n->as_table();
  }

  // The [[registry]] tables (and v1's [registries.insecure] registries = [...]); the
  // locations of the [[registry]] tables go to *named when given.
  Status Registries(const toml::table& doc, Config* config,
                    std::vector<std::string>* named = nullptr) const {
    MirrorLists mirrors;
    if (const toml::node* n = doc.get("registry")) {
      const toml::array* list = n->as_array();
      if (list == nullptr) return Error(*n, "'registry' must be an array of tables ([[registry]])");
      for (const toml::node& item : *list) {
        const toml::table* r = item.as_table();
        if (r == nullptr) return Error(item, "each [[registry]] must be a table");
        IMGFS_RETURN_IF_ERROR(CheckKeys(*r, "registry.", {"location", "insecure", "mirror"}));
        IMGFS_ASSIGN_OR_RETURN(auto location,
                               Get<std::string>(*r, "location", "a string", "registry.location"));
        IMGFS_ASSIGN_OR_RETURN(auto insecure,
                               Get<bool>(*r, "insecure", "true or false", "registry.insecure"));
        if (!location || location->empty()) {
          if (strict_) return Error(*r, "[[registry]] without a location");
          continue;  // a prefix-only entry of registries.conf: nothing imgfs uses
        }
        if (named != nullptr) named->push_back(NormalizeLocation(*location));
        if (insecure) {
          Entry(config, *location).insecure = {*insecure, Where(*r->get("insecure"))};
        }
        if (const toml::node* m = r->get("mirror")) {
          IMGFS_RETURN_IF_ERROR(Mirrors(*m, *location, &mirrors));
        }
      }
    }
    Status st;
    if (const toml::table* v1 = Table(doc, "registries", &st)) {
      if (const toml::table* ins = Table(*v1, "insecure", &st)) {
        if (const toml::array* hosts = (*ins)["registries"].as_array()) {
          for (const toml::node& h : *hosts) {
            if (auto s = h.value_exact<std::string>())
              Entry(config, *s).insecure = {true, Where(h)};
          }
        }
      }
    }
    IMGFS_RETURN_IF_ERROR(st);
    ApplyMirrors(mirrors, config);
    return Status::Ok();
  }

  Status Mirrors(const toml::node& n, const std::string& location, MirrorLists* out) const {
    const toml::array* list = n.as_array();
    if (list == nullptr)
      return Error(n, "'registry.mirror' must be an array of tables ([[registry.mirror]])");
    for (const toml::node& item : *list) {
      const toml::table* m = item.as_table();
      if (m == nullptr) return Error(item, "each [[registry.mirror]] must be a table");
      IMGFS_RETURN_IF_ERROR(CheckKeys(*m, "registry.mirror.", {"location", "insecure"}));
      IMGFS_ASSIGN_OR_RETURN(
          auto loc, Get<std::string>(*m, "location", "a string", "registry.mirror.location"));
      IMGFS_ASSIGN_OR_RETURN(
          auto insecure, Get<bool>(*m, "insecure", "true or false", "registry.mirror.insecure"));
      if (!loc || loc->empty()) return Error(*m, "[[registry.mirror]] without a location");
      std::string url = MirrorUrl(*loc, insecure.value_or(false));
      auto [scheme, authority] = registry::UrlSchemeAndAuthority(url);
      if (authority.empty() || url.size() > scheme.size() + 3 + authority.size()) {
        // A namespace under the mirror's host ("mirror.example.com/hub"): not spoken here.
        IMGFS_LOG(kWarning,
                  Where(*m) << ": mirror '" << *loc
                            << "' has a path; imgfs only uses mirrors at a host's /v2/, skipped");
        continue;
      }
      auto& entry = (*out)[NormalizeLocation(location)];
      if (entry.first.empty()) entry.second = Where(*m);
      entry.first.push_back(url);
    }
    return Status::Ok();
  }

  // imgfs's own keys: [cache] and [pull].
  Status Settings(const toml::table& doc, Config* config) const {
    IMGFS_RETURN_IF_ERROR(CheckKeys(doc, "", {"cache", "pull", "registry", "index"}));
    Status st;
    if (const toml::table* cache = Table(doc, "cache", &st)) {
      IMGFS_RETURN_IF_ERROR(CheckKeys(*cache, "cache.", {"dir", "max_size"}));
      IMGFS_ASSIGN_OR_RETURN(auto dir, Get<std::string>(*cache, "dir", "a string", "cache.dir"));
      if (dir) config->cache_dir = {*dir, Where(*cache->get("dir"))};
      if (const toml::node* n = cache->get("max_size")) {
        std::optional<uint64_t> bytes;
        if (auto i = n->value_exact<int64_t>(); i && *i >= 0) bytes = static_cast<uint64_t>(*i);
        if (auto s = n->value_exact<std::string>()) {
          Result<uint64_t> parsed = ParseByteSize(*s);
          if (!parsed.ok()) return Error(*n, "cache.max_size: " + parsed.status().message());
          bytes = *parsed;
        }
        if (!bytes) return Error(*n, "'cache.max_size' must be a size (\"20GiB\") or bytes");
        config->cache_max_size = {*bytes, Where(*n)};
      }
    }
    IMGFS_RETURN_IF_ERROR(st);
    if (const toml::table* index = Table(doc, "index", &st)) {
      IMGFS_RETURN_IF_ERROR(CheckKeys(*index, "index.", {"trust_from"}));
      if (const toml::node* n = index->get("trust_from")) {
        const toml::array* list = n->as_array();
        if (list == nullptr) return Error(*n, "'index.trust_from' must be an array of strings");
        for (const toml::node& item : *list) {
          auto v = item.value_exact<std::string>();
          if (!v || v->empty()) {
            return Error(item, "'index.trust_from' entries must be REGISTRY or REGISTRY/REPO");
          }
          config->trust_index_from.push_back({*v, Where(item)});
        }
      }
    }
    IMGFS_RETURN_IF_ERROR(st);
    if (const toml::table* pull = Table(doc, "pull", &st)) {
      IMGFS_RETURN_IF_ERROR(CheckKeys(*pull, "pull.", {"platform", "policy", "stall_timeout"}));
      IMGFS_ASSIGN_OR_RETURN(auto platform,
                             Get<std::string>(*pull, "platform", "a string", "pull.platform"));
      if (platform) {
        const toml::node& n = *pull->get("platform");
        Result<registry::Platform> p = registry::Platform::Parse(*platform);
        if (!p.ok()) return Error(n, "pull.platform: " + p.status().message());
        config->platform = {*platform, Where(n)};
      }
      IMGFS_ASSIGN_OR_RETURN(auto policy,
                             Get<std::string>(*pull, "policy", "a string", "pull.policy"));
      if (policy) {
        const toml::node& n = *pull->get("policy");
        if (!ParsePullPolicy(*policy).ok()) {
          return Error(n, "'pull.policy' must be \"missing\", \"always\" or \"never\"");
        }
        config->pull_policy = {*policy, Where(n)};
      }
      IMGFS_ASSIGN_OR_RETURN(auto stall,
                             Get<int64_t>(*pull, "stall_timeout", "seconds", "pull.stall_timeout"));
      if (stall) {
        const toml::node& n = *pull->get("stall_timeout");
        if (*stall < 1 || *stall > 3600) return Error(n, "'pull.stall_timeout' must be 1..3600");
        config->stall_timeout_s = {static_cast<int>(*stall), Where(n)};
      }
    }
    return st;
  }

 private:
  std::string path_;
  bool strict_;
};

// Reads one TOML file; kNotFound when it does not exist.
Result<toml::table> ParseToml(const std::string& path) {
  std::optional<std::string> text = ReadTextFile(path);
  if (!text) return Status::NotFound(path + ": no such file");
  try {
    return toml::parse(*text, std::string_view(path));
  } catch (const toml::parse_error& e) {
    return Status::InvalidArgument(path + ":" + std::to_string(e.source().begin.line) + ":" +
                                   std::to_string(e.source().begin.column) + ": " +
                                   std::string(e.description()));
  }
}

// docker's daemon.json: "registry-mirrors" (docker.io's) and "insecure-registries".
void ReadDockerDaemon(const std::string& path, const std::string& text, Config* config) {
  using nlohmann::json;
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    IMGFS_LOG(kWarning, path << " is not a JSON object; its registry settings are ignored");
    return;
  }
  MirrorLists mirrors;
  if (auto m = doc.find("registry-mirrors"); m != doc.end() && m->is_array()) {
    for (const json& url : *m) {
      if (!url.is_string() ||
          registry::UrlSchemeAndAuthority(url.get<std::string>()).first.empty()) {
        IMGFS_LOG(kWarning,
                  path << ": registry-mirrors entry " << url.dump() << " is not a URL, skipped");
        continue;
      }
      auto& entry = mirrors["docker.io"];
      entry.first.push_back(MirrorUrl(url.get<std::string>(), false));
      entry.second = path;
    }
  }
  if (auto ins = doc.find("insecure-registries"); ins != doc.end() && ins->is_array()) {
    for (const json& host : *ins) {
      if (host.is_string()) Entry(config, host.get<std::string>()).insecure = {true, path};
    }
  }
  ApplyMirrors(mirrors, config);
}

}  // namespace

const RegistryConfig* Config::Registry(const std::string& location) const {
  std::string key = NormalizeLocation(location);
  for (const RegistryConfig& r : registries) {
    if (r.location == key) return &r;
  }
  return nullptr;
}

ConfigPaths ConfigPaths::FromEnvironment() {
  ConfigPaths p;
  if (std::string explicit_file = Env("IMGFS_CONFIG"); !explicit_file.empty()) {
    p.imgfs = {explicit_file};
    p.imgfs_required = true;
  } else {
    p.imgfs.push_back("/etc/imgfs/config.toml");
    std::string xdg = Env("XDG_CONFIG_HOME");
    std::string home = Env("HOME");
    if (!xdg.empty() && xdg[0] == '/') {
      p.imgfs.push_back(xdg + "/imgfs/config.toml");
    } else if (!home.empty()) {
      p.imgfs.push_back(home + "/.config/imgfs/config.toml");
    }
  }
  p.registries_conf = Env("CONTAINERS_REGISTRIES_CONF");
  if (p.registries_conf.empty()) p.registries_conf = "/etc/containers/registries.conf";
  p.registries_conf_d = std::filesystem::path(p.registries_conf).parent_path() /
                        "registries.conf.d";
  p.docker_daemon = "/etc/docker/daemon.json";
  return p;
}

Result<Config> LoadConfig(const ConfigPaths& paths) {
  Config config;
  if (!paths.docker_daemon.empty()) {
    std::optional<std::string> text = ReadTextFile(paths.docker_daemon);
    config.files.emplace_back(paths.docker_daemon, text ? "read" : "not found");
    if (text) ReadDockerDaemon(paths.docker_daemon, *text, &config);
  }
  // The file's document, or nullopt for a missing file that is not required.
  auto parse = [&](const std::string& path, bool required) -> Result<std::optional<toml::table>> {
    Result<toml::table> doc = ParseToml(path);
    if (!doc.ok() && doc.status().IsNotFound() && !required) {
      config.files.emplace_back(path, "not found");
      return std::optional<toml::table>();
    }
    if (!doc.ok() && doc.status().IsNotFound()) {
      return Status::NotFound("$IMGFS_CONFIG names " + path + ", which does not exist");
    }
    if (!doc.ok()) return doc.status();
    config.files.emplace_back(path, "read");
    return std::optional<toml::table>(std::move(*doc));
  };
  // registries.conf, then its drop-ins in lexical order: a [[registry]] of a later file
  // replaces what the earlier ones said for its location (containers-registries.conf.d(5)).
  std::vector<std::string> group;
  if (!paths.registries_conf.empty()) group.push_back(paths.registries_conf);
  std::error_code ec;
  std::vector<std::string> drop_ins;
  for (const auto& e : std::filesystem::directory_iterator(paths.registries_conf_d, ec)) {
    if (e.path().extension() == ".conf" && e.is_regular_file(ec)) drop_ins.push_back(e.path());
  }
  std::sort(drop_ins.begin(), drop_ins.end());
  group.insert(group.end(), drop_ins.begin(), drop_ins.end());
  std::map<std::string, RegistryConfig> merged;
  for (const std::string& path : group) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<toml::table> doc, parse(path, /*required=*/false));
    if (!doc) continue;
    Config part;
    std::vector<std::string> named;
    IMGFS_RETURN_IF_ERROR(TomlReader(path, /*strict=*/false).Registries(*doc, &part, &named));
    for (const std::string& location : named) merged.erase(location);
    for (RegistryConfig& r : part.registries) merged[r.location] = std::move(r);
  }
  for (const auto& [location, r] : merged) {
    if (r.insecure.source != "default") Entry(&config, location).insecure = r.insecure;
    if (!r.mirrors.empty()) ApplyMirrors({{location, {r.mirrors, r.mirrors_source}}}, &config);
  }
  for (const std::string& path : paths.imgfs) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<toml::table> doc, parse(path, paths.imgfs_required));
    if (!doc) continue;
    TomlReader reader(path, /*strict=*/true);
    IMGFS_RETURN_IF_ERROR(reader.Settings(*doc, &config));
    IMGFS_RETURN_IF_ERROR(reader.Registries(*doc, &config));
  }
  std::sort(
      config.registries.begin(), config.registries.end(),
      [](const RegistryConfig& a, const RegistryConfig& b) { return a.location < b.location; });
  return config;
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
    Entry(config, host).insecure = {true, "flag --insecure-registry"};
  }
  std::sort(
      config->registries.begin(), config->registries.end(),
      [](const RegistryConfig& a, const RegistryConfig& b) { return a.location < b.location; });
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
