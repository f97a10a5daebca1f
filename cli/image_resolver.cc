#include "cli/image_resolver.h"

#include "base/digest.h"
#include "base/log.h"

namespace imgfs::cli {

std::string TagKey(const registry::Reference& ref) { return ref.Repo() + ":" + ref.tag; }

namespace {

std::string NeverMessage(const std::string& what) {
  return what +
         " is not in the cache and --pull=never forbids asking the registry: run it "
         "once with --pull=missing";
}

// registry::ManifestSource with the cache in front of the registry, under a pull policy.
class CachedManifestSource : public registry::ManifestSource {
 public:
  CachedManifestSource(PullPolicy policy, registry::Client* client, cache::Cache* cache)
      : policy_(policy), client_(client), cache_(cache) {}

  bool used_network() const { return used_network_; }

  Result<registry::ManifestResponse> GetManifest(const registry::Reference& repo,
                                                 std::string_view tag_or_digest) override {
    if (ValidateDigest(tag_or_digest).ok()) return ByDigest(repo, std::string(tag_or_digest));
    return ByTag(repo);
  }

  Result<std::string> GetConfig(const registry::Reference& repo,
                                const registry::Descriptor& config) override {
    auto cached = cache_->GetDocument(config.digest);
    if (cached.ok() && cached->bytes.size() == config.size) return std::move(cached->bytes);
    if (!cached.ok() && !cached.status().IsNotFound()) return cached.status();
    if (policy_ == PullPolicy::kNever) {
      return Status::NotFound(NeverMessage("config " + config.digest + " of " + repo.Repo()));
    }
    used_network_ = true;
    registry::ClientManifestSource registry(client_);
    IMGFS_ASSIGN_OR_RETURN(std::string bytes, registry.GetConfig(repo, config));
    IMGFS_RETURN_IF_ERROR(cache_->PutDocument(config.digest, config.media_type, bytes));
    return bytes;
  }

 private:
  Result<registry::ManifestResponse> ByDigest(const registry::Reference& repo,
                                              const std::string& digest) {
    auto cached = cache_->GetDocument(digest);  // re-verified against the digest
    if (cached.ok()) {
      return registry::ManifestResponse{std::move(cached->bytes), cached->media_type, digest};
    }
    if (!cached.status().IsNotFound()) return cached.status();
    if (policy_ == PullPolicy::kNever) {
      return Status::NotFound(NeverMessage("manifest " + digest + " of " + repo.Repo()));
    }
    return Fetch(repo, digest);
  }

  Result<registry::ManifestResponse> ByTag(const registry::Reference& repo) {
    auto record = cache_->GetReference(TagKey(repo));
    if (!record.ok() && !record.status().IsNotFound()) return record.status();
    if (!record.ok()) {
      if (policy_ == PullPolicy::kNever) return Status::NotFound(NeverMessage(repo.String()));
      return FetchTag(repo);
    }
    if (policy_ != PullPolicy::kAlways) {
      auto doc = ByDigest(repo, record->manifest_digest);
      if (doc.ok() || policy_ == PullPolicy::kNever) return doc;
      return FetchTag(repo);  // the record outlived its document
    }
    // Revalidate with HEAD: registries rate-limit manifest GETs, not HEADs.
    used_network_ = true;
    IMGFS_ASSIGN_OR_RETURN(std::string current, client_->HeadManifest(repo, repo.tag));
    if (current == record->manifest_digest) {
      auto doc = cache_->GetDocument(current);
      if (doc.ok()) {
        IMGFS_RETURN_IF_ERROR(cache_->PutReference(TagKey(repo), current));
        return registry::ManifestResponse{std::move(doc->bytes), doc->media_type, current};
      }
    }
    return FetchTag(repo);
  }

  Result<registry::ManifestResponse> FetchTag(const registry::Reference& repo) {
    IMGFS_ASSIGN_OR_RETURN(registry::ManifestResponse resp, Fetch(repo, repo.tag));
    IMGFS_RETURN_IF_ERROR(cache_->PutReference(TagKey(repo), resp.digest));
    return resp;
  }

  Result<registry::ManifestResponse> Fetch(const registry::Reference& repo,
                                           const std::string& tag_or_digest) {
    used_network_ = true;
    IMGFS_ASSIGN_OR_RETURN(registry::ManifestResponse resp,
                           client_->GetManifest(repo, tag_or_digest));
    IMGFS_RETURN_IF_ERROR(cache_->PutDocument(resp.digest, resp.media_type, resp.bytes));
    return resp;
  }

  const PullPolicy policy_;
  registry::Client* const client_;
  cache::Cache* const cache_;
  bool used_network_ = false;
};

}  // namespace

Result<PullPolicy> ParsePullPolicy(std::string_view s) {
  if (s == "missing") return PullPolicy::kMissing;
  if (s == "always") return PullPolicy::kAlways;
  if (s == "never") return PullPolicy::kNever;
  return Status::InvalidArgument("--pull must be missing, always or never, not '" + std::string(s) +
                                 "'");
}

Result<registry::ResolvedImage> ResolveImage(const registry::Reference& ref,
                                             const registry::Platform& want, PullPolicy policy,
                                             registry::Client* client, cache::Cache* cache) {
  CachedManifestSource source(policy, client, cache);
  IMGFS_ASSIGN_OR_RETURN(registry::ResolvedImage image, registry::Resolve(source, ref, want));
  IMGFS_LOG(kInfo, "resolved " << ref.String() << " to " << image.manifest.digest
                               << (source.used_network() ? " (registry)" : " (cache)"));
  return image;
}

}  // namespace imgfs::cli
