// ResolveImage: from a reference to a verified image manifest and config, the way docker
// pulls, with the cache in front of the registry.
//
// Pull policies (as docker's --pull, DESIGN.md "Cache"):
//   kMissing  use the cached manifest of the reference when there is one, with no network at
//             all; otherwise ask the registry. The default for mount and inspect.
//   kAlways   revalidate with the registry (a HEAD of the tag; a GET only when it changed).
//   kNever    the cache only; a reference never resolved before is kNotFound.
// A reference with a digest is immutable: whatever the policy, a cached copy is used as is.
//
// Everything fetched is verified (manifests against the digest they are named or recorded
// by, the config against the manifest's descriptor) and then kept in the cache: the
// reference's digest, the index (if any), the manifest and the config.
//
// Thread-safety: a free function; `client` and `cache` are thread-safe.
#pragma once

#include <string>

#include "base/status.h"
#include "cache/cache.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/platform.h"
#include "registry/reference.h"

namespace imgfs::cli {

enum class PullPolicy { kMissing, kAlways, kNever };

Result<PullPolicy> ParsePullPolicy(std::string_view s);

struct OpenedImage {
  registry::Reference ref;           // as the user gave it, normalized
  std::string index_digest;          // the index / manifest list, when the reference named one
  std::string index_media_type;
  std::string manifest_digest;       // the image manifest
  std::string manifest_media_type;
  registry::ImageManifest manifest;
  std::string config_bytes;          // verified against manifest.config
  registry::Platform platform;       // the platform of the image
  bool from_cache = false;           // resolved without asking the registry
};

Result<OpenedImage> ResolveImage(const registry::Reference& ref, const registry::Platform& want,
                                 PullPolicy policy, registry::Client* client,
                                 cache::Cache* cache);

}  // namespace imgfs::cli
