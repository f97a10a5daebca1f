// ResolveImage: from a reference to a verified image manifest and config, the way docker
// pulls, with the cache in front of the registry.
//
// The resolution itself is registry::Resolve; this adds where its documents come from, a
// cache-backed registry::ManifestSource, under docker's pull policies (DESIGN.md "Cache"):
//   kMissing  use the cached manifest of the reference when there is one, with no network at
//             all; otherwise ask the registry. The default for mount and inspect.
//   kAlways   revalidate the tag with the registry (a HEAD; a GET only when it changed).
//   kNever    the cache only; a reference never resolved before is kNotFound.
// A document named by digest is immutable: whatever the policy, a cached copy is used as is.
//
// Everything fetched is verified (by registry::Client) and then kept in the cache: the tag's
// digest with its fetch time, the index (if any), the manifest and the config.
//
// Thread-safety: a free function; `client` and `cache` are thread-safe.
#pragma once

#include <string>

#include "base/status.h"
#include "cache/cache.h"
#include "registry/client.h"
#include "registry/platform.h"
#include "registry/reference.h"
#include "registry/resolve.h"

namespace imgfs::cli {

enum class PullPolicy { kMissing, kAlways, kNever };

Result<PullPolicy> ParsePullPolicy(std::string_view s);

// The cache's reference key of what a tag named when the registry was last asked: the fully
// qualified name without any digest (`imgfs rmi` deletes it with the pulled record).
std::string TagKey(const registry::Reference& ref);

Result<registry::ResolvedImage> ResolveImage(const registry::Reference& ref,
                                             const registry::Platform& want, PullPolicy policy,
                                             registry::Client* client, cache::Cache* cache);

}  // namespace imgfs::cli
