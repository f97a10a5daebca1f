// registry::Client: pushing blobs and manifests, and finding a manifest's referrers (OCI
// distribution spec 1.1: the referrers API, else the referrers tag schema).
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "registry/client_impl.h"
#include "registry/manifest.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

// The tag of the referrers tag schema for `digest` ("sha256:<hex>" -> "sha256-<hex>").
std::string ReferrersTag(std::string_view digest) {
  std::string tag(digest);
  if (size_t colon = tag.find(':'); colon != std::string::npos) tag[colon] = '-';
  return tag;
}

// The descriptors of an image index's "manifests" whose artifactType is `want` ("" = all).
Result<std::vector<Descriptor>> FilterReferrers(std::string_view bytes, std::string_view want,
                                                const std::string& where) {
  Result<ImageIndex> index = ParseImageIndex(bytes);
  if (!index.ok()) return index.status().WithContext(where);
  std::vector<Descriptor> out;
  for (Descriptor& d : index->manifests) {
    if (want.empty() || d.artifact_type == want) out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

Result<bool> Client::Impl::HasBlob(const Reference& repo, std::string_view digest) {
  Call call;
  call.repo = &repo;
  call.method = "HEAD";
  call.path = "/v2/" + repo.repository + "/blobs/" + std::string(digest);
  call.what = repo.Repo() + "@" + std::string(digest);
  call.push = true;
  HttpResponse resp;
  uint64_t delivered = 0;
  IMGFS_RETURN_IF_ERROR(SendTo(call, &resp, options_.max_attempts, &delivered));
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  return MapStatus(call, resp, /*manifest=*/false);
}

Result<std::string> Client::Impl::PushBlob(const Reference& repo, std::string_view bytes) {
  const std::string digest = Sha256Digest(bytes);
  IMGFS_ASSIGN_OR_RETURN(bool present, HasBlob(repo, digest));
  if (present) return digest;
  uint64_t delivered = 0;
  Call start;
  start.repo = &repo;
  start.method = "POST";
  start.path = "/v2/" + repo.repository + "/blobs/uploads/";
  start.what = "an upload to " + repo.Repo();
  start.push = true;
  HttpResponse resp;
  IMGFS_RETURN_IF_ERROR(SendTo(start, &resp, options_.max_attempts, &delivered));
  if (resp.status != 202) return MapStatus(start, resp, /*manifest=*/false);
  const std::string location = resp.Header("location");
  if (location.empty()) {
    return Status::Corrupt("registry " + repo.domain + " started an upload to " + repo.Repo() +
                           " without a Location");
  }
  // The Location may be absolute or a path; either way it must stay on the registry, which is
  // where the credentials go.
  const std::string base = BaseUrl(repo);
  const std::string url = ResolveUrl(base + start.path, location);
  const auto [scheme, authority] = UrlSchemeAndAuthority(url);
  if (scheme.empty() || scheme + "://" + authority != base) {
    return Status::Corrupt("registry " + repo.domain + " sent an upload location elsewhere: '" +
                           location + "'");
  }
  Call put;
  put.repo = &repo;
  put.method = "PUT";
  put.path = url.substr(base.size());
  put.path += (put.path.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") +
              digest;
  put.headers = {"Content-Type: application/octet-stream"};
  put.body = std::string(bytes);
  put.what = "blob " + repo.Repo() + "@" + digest;
  put.push = true;
  // An upload session is not retried blindly: a second PUT to it fails anyway.
  IMGFS_RETURN_IF_ERROR(SendTo(put, &resp, 1, &delivered));
  if (resp.status != 201) return MapStatus(put, resp, /*manifest=*/false);
  std::string sent = resp.Header("docker-content-digest");
  if (!sent.empty() && sent != digest) {
    return Status::DigestMismatch("registry " + repo.domain + " stored blob " + digest + " as " +
                                  sent);
  }
  return digest;
}

Result<std::string> Client::Impl::PutManifest(const Reference& repo, std::string_view tag_or_digest,
                                              std::string_view media_type, std::string_view bytes) {
  IMGFS_ASSIGN_OR_RETURN(bool by_digest, CheckTagOrDigest(tag_or_digest));
  const std::string digest = Sha256Digest(bytes);
  if (by_digest && digest != tag_or_digest) {
    return Status::InvalidArgument("manifest bytes hash to " + digest + ", not " +
                                   std::string(tag_or_digest));
  }
  Call call;
  call.repo = &repo;
  call.method = "PUT";
  call.path = "/v2/" + repo.repository + "/manifests/" + std::string(tag_or_digest);
  call.headers = {"Content-Type: " + std::string(media_type)};
  call.body = std::string(bytes);
  call.what = repo.Repo() + (by_digest ? "@" : ":") + std::string(tag_or_digest);
  call.push = true;
  HttpResponse resp;
  uint64_t delivered = 0;
  IMGFS_RETURN_IF_ERROR(SendTo(call, &resp, options_.max_attempts, &delivered));
  if (resp.status != 201 && resp.status != 200) return MapStatus(call, resp, /*manifest=*/true);
  return digest;
}

Result<Referrers> Client::Impl::ListReferrers(const Reference& repo, std::string_view digest,
                                              std::string_view artifact_type) {
  IMGFS_RETURN_IF_ERROR(ValidateDigest(digest));
  Call call;
  call.repo = &repo;
  call.path = "/v2/" + repo.repository + "/referrers/" + std::string(digest);
  if (!artifact_type.empty()) call.path += "?artifactType=" + std::string(artifact_type);
  call.headers = {"Accept: " + std::string(kOciIndex)};
  call.max_body = kMaxManifestBytes;
  call.what = "the referrers of " + repo.Repo() + "@" + std::string(digest);
  HttpResponse resp;
  IMGFS_RETURN_IF_ERROR(Send(call, &resp));
  Referrers out;
  if (resp.status == 200 && !resp.truncated) {
    out.from_api = true;
    IMGFS_ASSIGN_OR_RETURN(out.manifests, FilterReferrers(resp.body, artifact_type, call.what));
    return out;
  }
  // No referrers API (distribution 2.8 answers 404): the tag schema.
  Result<ManifestResponse> tagged = GetManifest(repo, ReferrersTag(digest));
  if (!tagged.ok()) {
    if (tagged.status().code() == Code::kNotFound) return out;
    return tagged.status();
  }
  IMGFS_ASSIGN_OR_RETURN(out.manifests, FilterReferrers(tagged->bytes, artifact_type,
                                                        repo.Repo() + ":" + ReferrersTag(digest)));
  return out;
}

Result<bool> Client::HasBlob(const Reference& repo, std::string_view digest) {
  return impl_->HasBlob(repo, digest);
}

Result<std::string> Client::PushBlob(const Reference& repo, std::string_view bytes) {
  return impl_->PushBlob(repo, bytes);
}

Result<std::string> Client::PutManifest(const Reference& repo, std::string_view tag_or_digest,
                                        std::string_view media_type, std::string_view bytes) {
  return impl_->PutManifest(repo, tag_or_digest, media_type, bytes);
}

Result<Referrers> Client::ListReferrers(const Reference& repo, std::string_view digest,
                                        std::string_view artifact_type) {
  return impl_->ListReferrers(repo, digest, artifact_type);
}

}  // namespace imgfs::registry
