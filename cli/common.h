// What every imgfs command shares before it does its own work: the image argument checked
// and resolved into a Target, the cache root, the registry client's options, and the one way
// a command reports failure.
//
// Nothing here touches the network or the cache: ParseTarget catches a mistake before a
// mount forks. Free functions, no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"
#include "cli/commands.h"
#include "cli/image_resolver.h"
#include "registry/client.h"
#include "registry/platform.h"
#include "registry/reference.h"
#include "registry/resolve.h"

namespace imgfs::cli {

// Prints "imgfs: <message>" on stderr; returns the exit status 1.
int Fail(const Status& status);

// --cache, or cache::Cache::DefaultRoot().
std::string CacheRoot(const CommonOptions& common);

// The image a command works on, with the platform and pull policy it asked for.
struct Target {
  registry::Reference ref;
  registry::Platform platform;
  bool platform_given = false;  // --platform, rather than this host's
  PullPolicy policy = PullPolicy::kMissing;
};

// Parses NAME[:TAG|@DIGEST], --platform and --pull: kInvalidArgument on a mistake.
Result<Target> ParseTarget(const std::string& image, const CommonOptions& common);

// A single-platform image for another platform: an error when --platform asked for it, as
// docker's "does not match the specified platform"; a warning when only the host's differs
// (one may well look inside an arm64 image on an amd64 machine).
Status CheckPlatform(const registry::ResolvedImage& image, const Target& target);

// The short names docker prints (distribution's FamiliarName / FamiliarString): without
// "docker.io/", and without "library/" for official images ("alpine", "alpine:3.19",
// "127.0.0.1:5000/team/app@sha256:...").
std::string FamiliarName(const registry::Reference& ref);
std::string FamiliarString(const registry::Reference& ref);

// The cache's record that `imgfs pull` completed a reference (docker's reference store):
// kPulledPrefix + the fully qualified reference. No reference contains a space, so these keys
// never meet the resolver's tag records in the same table.
inline constexpr std::string_view kPulledPrefix = "pulled ";
std::string PulledKey(const registry::Reference& ref);

// "2026-01-31 23:59": a time as ls -l and imgfs images show it, in UTC.
std::string UtcMinute(int64_t unix_seconds);

// The client's options from the effective configuration (after ResolveConfig, cli/config.h):
// the configured mirrors and insecure registries, --stall-timeout, and the certs directory
// (--certs-dir, else $IMGFS_CERTS_DIR, else docker's and podman's).
registry::ClientOptions DefaultClientOptions(const CommonOptions& common);

}  // namespace imgfs::cli
