// Config: imgfs's settings as a user keeps them, and where each one came from.
//
// Sources, later ones winning for a single value:
//   1. defaults;
//   2. docker's daemon.json (/etc/docker/daemon.json): "registry-mirrors" (for docker.io) and
//      "insecure-registries";
//   3. containers' registries.conf ($CONTAINERS_REGISTRIES_CONF, else
//      /etc/containers/registries.conf): `[[registry]]` tables' `location`, `insecure` and
//      `[[registry.mirror]]` `location`/`insecure`; v1's `[registries.insecure] registries`;
//      then the drop-ins registries.conf.d/*.conf beside it, in lexical order, a later file's
//      [[registry]] replacing an earlier file's entry for the same location (insecure and
//      mirrors alike), as containers-registries.conf.d(5) has it;
//   4. imgfs's own config file: $IMGFS_CONFIG alone when set (it must exist), else
//      /etc/imgfs/config.toml, then $XDG_CONFIG_HOME/imgfs/config.toml (default
//      ~/.config/imgfs/config.toml), the user's file winning. Its keys (README "Configuration"):
//        [cache]  dir, max_size ("20GiB", "500MB" or bytes; 0 = no limit)
//        [pull]   platform ("os/arch[/variant]"), policy (missing|always|never), stall_timeout (s)
//        [index]  trust_from (["REGISTRY", "REGISTRY/REPO"]: shared layer indexes found
//                 through referrers there are used, cli/shared_index.h)
//        [[registry]] location, insecure, [[registry.mirror]] location, insecure
//      as registries.conf spells them. An unknown key or a value of the wrong type is an error;
//   5. the environment: IMGFS_CACHE for the cache directory, IMGFS_CACHE_MAX_SIZE for its limit;
//   6. the command's flags (--cache, --cache-max-size, --platform, --pull, --stall-timeout,
//      --registry-mirror [REGISTRY=]URL, --insecure-registry HOST, --trust-index-from, whose
//      entries add to the files').
// A registry's mirrors come whole from the strongest source that names any for it; insecure
// registries are the union of every source. Docker Hub's aliases (index.docker.io,
// registry-1.docker.io) are "docker.io". A mirror location without a scheme is https://, or
// http:// when the mirror is marked insecure or is a loopback address.
//
// Malformed files are kInvalidArgument naming the file, line and key ("config.toml:7: ...").
// A missing default file is no error. Nothing here touches the network.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "cli/commands.h"

namespace imgfs::cli {

// A value and where it came from: "default", "flag --cache", "env IMGFS_CACHE",
// "/etc/imgfs/config.toml:3".
template <typename T>
struct Sourced {
  T value{};
  std::string source = "default";
};

struct RegistryConfig {
  std::string location;  // "docker.io", "10.1.2.3:5000"
  Sourced<bool> insecure;
  // URLs ("https://mirror.example.com", "http://127.0.0.1:5001"), tried in order.
  std::vector<std::string> mirrors;
  std::string mirrors_source;  // "" when there are none
};

struct Config {
  // Every file consulted, in order, with "read" or "not found".
  std::vector<std::pair<std::string, std::string>> files;
  Sourced<std::string> cache_dir;    // "" = cache::Cache::DefaultRoot()
  Sourced<uint64_t> cache_max_size;  // bytes; 0 = no limit
  Sourced<std::string> platform;     // "" = this host's
  Sourced<std::string> pull_policy{"missing"};
  Sourced<int> stall_timeout_s{30};
  std::vector<RegistryConfig> registries;  // sorted by location
  // [index] trust_from and --trust-index-from, each entry with where it came from.
  std::vector<Sourced<std::string>> trust_index_from;

  // The entry for `location` (normalized), or nullptr.
  const RegistryConfig* Registry(const std::string& location) const;
};

// The files to read. FromEnvironment follows the rules above.
struct ConfigPaths {
  std::vector<std::string> imgfs;  // read in order, later ones winning
  bool imgfs_required = false;     // $IMGFS_CONFIG: a missing file is an error
  std::string registries_conf;
  std::string registries_conf_d;  // its drop-in directory; "" or missing: none
  std::string docker_daemon;

  static ConfigPaths FromEnvironment();
};

// Reads the files (sources 1-4).
Result<Config> LoadConfig(const ConfigPaths& paths);

// Applies the environment and the flags of `common` that were given (common.flags_given),
// sources 5 and 6. Bad flag values are kInvalidArgument naming the flag.
Status OverlayFlags(const CommonOptions& common, Config* config);

// Writes the effective values back into *common, for the commands to use.
void ApplyConfig(const Config& config, CommonOptions* common);

// LoadConfig(FromEnvironment()), OverlayFlags and ApplyConfig: what main does before a command.
Result<Config> ResolveConfig(CommonOptions* common);

// "20GiB", "500MB", "1.5G", "123": bytes (K/M/G/T are powers of 1024, KB/MB/GB/TB of 1000).
Result<uint64_t> ParseByteSize(const std::string& text);

// `imgfs info`: the effective configuration (from ResolveConfig) and where each value came
// from, on stdout.
int RunInfo(const Config& config);

}  // namespace imgfs::cli
