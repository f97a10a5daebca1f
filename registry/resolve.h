// Resolve: from a reference to the verified image manifest and config for one platform, as
// `docker pull` does it. Where the documents come from is a ManifestSource: the registry
// (ClientManifestSource), or a cache in front of it (cli/image_resolver.h).
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
#include <string>
#include <vector>

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
  std::string config;  // the config blob (digest and size verified)
  // The config's rootfs.diff_ids, one per layer of `parsed` (checked): what each layer's
  // uncompressed tar must hash to.
  std::vector<std::string> diff_ids;
  // The platform chosen: from the index descriptor, else from the image config, else `want`.
  Platform platform;
};

// The documents Resolve reads. Implementations verify what they return: a manifest asked for
// by digest hashes to it (ManifestResponse::digest is always the bytes' digest), a config
// hashes to its descriptor's digest and has its size.
class ManifestSource {
 public:
  virtual ~ManifestSource() = default;
  virtual Result<ManifestResponse> GetManifest(const Reference& repo,
                                               std::string_view tag_or_digest) = 0;
  virtual Result<std::string> GetConfig(const Reference& repo, const Descriptor& config) = 0;
};

// The registry itself. Does not own the client.
class ClientManifestSource : public ManifestSource {
 public:
  explicit ClientManifestSource(Client* client) : client_(client) {}
  Result<ManifestResponse> GetManifest(const Reference& repo,
                                       std::string_view tag_or_digest) override;
  Result<std::string> GetConfig(const Reference& repo, const Descriptor& config) override;

 private:
  Client* const client_;
};

Result<ResolvedImage> Resolve(ManifestSource& source, const Reference& ref, const Platform& want);

// Resolve straight from the registry.
Result<ResolvedImage> Resolve(Client& client, const Reference& ref, const Platform& want);

// The os/architecture/variant of an image config (untrusted JSON); nullopt when it does not
// say.
std::optional<Platform> PlatformOfConfig(std::string_view config_bytes);

}  // namespace imgfs::registry
