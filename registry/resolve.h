// Resolve: from a reference to the verified image manifest for one platform, as `docker pull`
// does it (without any cache; cli/ puts the cache in front).
//
// By digest when the reference has one (its tag is then ignored, like docker), else by tag.
// When that names an index / manifest list, the manifest for `want` is chosen (SelectPlatform)
// and fetched by its digest, and its size must match the index's descriptor. Nested indexes and
// non-image artifacts are kUnsupported. Every manifest returned hashes to the digest it is
// known by (Client::GetManifest).
//
// Thread-safety: a free function; Client is thread-safe.
#pragma once

#include <optional>

#include "base/status.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/platform.h"
#include "registry/reference.h"

namespace imgfs::registry {

struct ResolvedImage {
  Reference ref;                          // as given
  std::optional<ManifestResponse> index;  // when the reference named an index / manifest list
  ManifestResponse manifest;              // the image manifest (digest verified)
  ImageManifest parsed;
  // The platform chosen: from the index descriptor, else from the image config, else `want`.
  Platform platform;
};

Result<ResolvedImage> Resolve(Client& client, const Reference& ref, const Platform& want);

// The os/architecture/variant of an image config (untrusted JSON); nullopt when it does not
// say.
std::optional<Platform> PlatformOfConfig(std::string_view config_bytes);

}  // namespace imgfs::registry
