#include "cli/image_resolver.h"

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/log.h"

namespace imgfs::cli {
namespace {

// The cache key of a tag: the fully qualified name without any digest.
std::string TagKey(const registry::Reference& ref) {
  return ref.Repo() + ":" + ref.tag;
}

// A document from the cache, or fetched by digest when the policy allows and stored.
Result<cache::Document> LoadManifestByDigest(const registry::Reference& ref,
                                             const std::string& digest, PullPolicy policy,
                                             registry::Client* client, cache::Cache* cache,
                                             bool* fetched) {
  auto cached = cache->GetDocument(digest);
  if (cached.ok()) return cached;
  if (!cached.status().IsNotFound()) return cached.status();
  if (policy == PullPolicy::kNever) {
    return Status::NotFound("manifest " + digest + " of " + ref.Repo() +
                            " is not in the cache and --pull=never forbids asking the registry");
  }
  IMGFS_ASSIGN_OR_RETURN(registry::ManifestResponse resp, client->GetManifest(ref, digest));
  IMGFS_RETURN_IF_ERROR(cache->PutDocument(resp.digest, resp.media_type, resp.bytes));
  *fetched = true;
  return cache::Document{resp.media_type, resp.bytes};
}

registry::Platform PlatformOfConfig(const std::string& config_bytes,
                                    const registry::Platform& fallback) {
  auto json = nlohmann::json::parse(config_bytes, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return fallback;
  registry::Platform p;
  p.os = json.value("os", std::string());
  p.architecture = json.value("architecture", std::string());
  p.variant = json.value("variant", std::string());
  if (p.os.empty() || p.architecture.empty()) return fallback;
  return p;
}

}  // namespace

Result<PullPolicy> ParsePullPolicy(std::string_view s) {
  if (s == "missing") return PullPolicy::kMissing;
  if (s == "always") return PullPolicy::kAlways;
  if (s == "never") return PullPolicy::kNever;
  return Status::InvalidArgument("--pull must be missing, always or never, not '" +
                                 std::string(s) + "'");
}

Result<OpenedImage> ResolveImage(const registry::Reference& ref, const registry::Platform& want,
                                 PullPolicy policy, registry::Client* client,
                                 cache::Cache* cache) {
  OpenedImage image;
  image.ref = ref;
  bool fetched = false;

  // 1. The digest the reference stands for: pinned, cached, or asked of the registry.
  std::string top_digest = ref.digest;
  cache::Document top_doc;
  if (top_digest.empty()) {
    auto record = cache->GetReference(TagKey(ref));
    if (!record.ok() && !record.status().IsNotFound()) return record.status();
    if (policy == PullPolicy::kNever && !record.ok()) {
      return Status::NotFound(ref.String() +
                              " is not in the cache and --pull=never forbids asking the "
                              "registry: mount it once with --pull=missing");
    }
    if (record.ok() && policy != PullPolicy::kAlways) {
      top_digest = record->manifest_digest;
    } else if (record.ok()) {
      // Revalidate with HEAD: registries rate-limit manifest GETs, not HEADs.
      auto head = client->HeadManifest(ref, ref.tag);
      if (!head.ok()) return head.status();
      if (*head == record->manifest_digest && cache->GetDocument(*head).ok()) {
        top_digest = *head;
        IMGFS_RETURN_IF_ERROR(cache->PutReference(TagKey(ref), top_digest));
      }
    }
    if (top_digest.empty()) {
      IMGFS_ASSIGN_OR_RETURN(registry::ManifestResponse resp, client->GetManifest(ref, ref.tag));
      IMGFS_RETURN_IF_ERROR(cache->PutDocument(resp.digest, resp.media_type, resp.bytes));
      IMGFS_RETURN_IF_ERROR(cache->PutReference(TagKey(ref), resp.digest));
      top_digest = resp.digest;
      top_doc = cache::Document{resp.media_type, resp.bytes};
      fetched = true;
    }
  }
  if (top_doc.bytes.empty()) {
    IMGFS_ASSIGN_OR_RETURN(top_doc,
                           LoadManifestByDigest(ref, top_digest, policy, client, cache, &fetched));
  }

  // 2. An index or manifest list: choose the platform, then its manifest by digest.
  IMGFS_ASSIGN_OR_RETURN(registry::ManifestKind kind,
                         registry::ClassifyManifest(top_doc.bytes, top_doc.media_type));
  cache::Document manifest_doc = top_doc;
  image.manifest_digest = top_digest;
  std::optional<registry::Platform> index_platform;
  if (kind == registry::ManifestKind::kIndex) {
    IMGFS_ASSIGN_OR_RETURN(registry::ImageIndex index, registry::ParseImageIndex(top_doc.bytes));
    IMGFS_ASSIGN_OR_RETURN(registry::Descriptor chosen, registry::SelectPlatform(index, want));
    image.index_digest = top_digest;
    image.index_media_type = top_doc.media_type;
    image.manifest_digest = chosen.digest;
    index_platform = chosen.platform;
    IMGFS_ASSIGN_OR_RETURN(manifest_doc, LoadManifestByDigest(ref, chosen.digest, policy, client,
                                                              cache, &fetched));
    IMGFS_ASSIGN_OR_RETURN(registry::ManifestKind inner,
                           registry::ClassifyManifest(manifest_doc.bytes, manifest_doc.media_type));
    if (inner != registry::ManifestKind::kImage) {
      return Status::Unsupported("index " + top_digest + " of " + ref.Repo() +
                                 " points at another index for " + want.String());
    }
  }
  image.manifest_media_type = manifest_doc.media_type;
  IMGFS_ASSIGN_OR_RETURN(image.manifest, registry::ParseImageManifest(manifest_doc.bytes));

  // 3. The config, verified against its descriptor.
  const registry::Descriptor& config = image.manifest.config;
  auto cached_config = cache->GetDocument(config.digest);
  if (cached_config.ok()) {
    image.config_bytes = std::move(cached_config->bytes);
  } else if (policy == PullPolicy::kNever && !fetched) {
    return Status::NotFound("config " + config.digest + " of " + ref.String() +
                            " is not in the cache and --pull=never forbids asking the registry");
  } else {
    IMGFS_ASSIGN_OR_RETURN(image.config_bytes,
                           client->GetBlobVerified(ref, config.digest, 64 << 20));
    if (image.config_bytes.size() != config.size) {
      return Status::DigestMismatch("config " + config.digest + " of " + ref.String() + " has " +
                                    std::to_string(image.config_bytes.size()) +
                                    " bytes, the manifest says " + std::to_string(config.size));
    }
    IMGFS_RETURN_IF_ERROR(cache->PutDocument(config.digest, config.media_type, image.config_bytes));
    fetched = true;
  }
  image.platform = PlatformOfConfig(image.config_bytes, index_platform.value_or(want));
  image.from_cache = !fetched;
  IMGFS_LOG(kInfo, "resolved " << ref.String() << " to " << image.manifest_digest
                               << (image.from_cache ? " (cache)" : " (registry)"));
  return image;
}

}  // namespace imgfs::cli
