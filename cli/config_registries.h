// What cli/config.cc's two halves share (not for use outside cli/config*.cc): registry
// locations, their entries in a Config and their mirror lists, and the environment.
// config_files.cc reads the files (sources 2-4 of config.h) into a Config with them, config.cc
// lays the environment and the flags over it (sources 5 and 6) and writes the result back.
//
// Thread-safety: free functions on the caller's Config.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cli/config.h"

namespace imgfs::cli {

// $name, or "" when it is unset.
std::string Env(const char* name);

// A registry's key in Config: "https://index.docker.io/v1/" -> "docker.io";
// "host:5000/" -> "host:5000".
std::string NormalizeLocation(std::string loc);

// A mirror location as registries.conf writes it ("host:port") or docker does (a URL), as a URL:
// without a scheme it is https://, or http:// when `insecure` or a loopback host.
std::string MirrorUrl(std::string loc, bool insecure);

// The entry of `location` (normalized) in config->registries, added when there is none.
RegistryConfig& RegistryEntry(Config* config, const std::string& location);

// Mirrors named by one source, per normalized location: the URLs and where they came from.
using MirrorLists = std::map<std::string, std::pair<std::vector<std::string>, std::string>>;

// Each registry's list replaces what weaker sources said of its mirrors.
void ApplyMirrors(const MirrorLists& lists, Config* config);

// Orders config->registries by location, as Config keeps them.
void SortRegistries(Config* config);

}  // namespace imgfs::cli
