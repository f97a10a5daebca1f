// Reading the configuration files (sources 2-4 of config.h): docker's daemon.json,
// registries.conf and its drop-ins, imgfs's config.toml.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "cli/config.h"
#include "cli/config_registries.h"
#include "cli/image_resolver.h"
#include "registry/http.h"
#include "registry/platform.h"

namespace imgfs::cli {

namespace {

std::optional<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
          RegistryEntry(config, *location).insecure = {*insecure, Where(*r->get("insecure"))};
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
              RegistryEntry(config, *s).insecure = {true, Where(h)};
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
      if (host.is_string()) RegistryEntry(config, host.get<std::string>()).insecure = {true, path};
    }
  }
  ApplyMirrors(mirrors, config);
}

}  // namespace

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
    if (r.insecure.source != "default") RegistryEntry(&config, location).insecure = r.insecure;
    if (!r.mirrors.empty()) ApplyMirrors({{location, {r.mirrors, r.mirrors_source}}}, &config);
  }
  for (const std::string& path : paths.imgfs) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<toml::table> doc, parse(path, paths.imgfs_required));
    if (!doc) continue;
    TomlReader reader(path, /*strict=*/true);
    IMGFS_RETURN_IF_ERROR(reader.Settings(*doc, &config));
    IMGFS_RETURN_IF_ERROR(reader.Registries(*doc, &config));
  }
  SortRegistries(&config);
  return config;
}

}  // namespace imgfs::cli
