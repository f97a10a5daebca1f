// registry::Client: manifests by tag or digest, their HEAD, and the paged tags list.
#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "base/digest.h"
#include "registry/client_impl.h"
#include "registry/manifest.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

// The target of the `rel="next"` entry of a Link header ("" when there is none).
std::string NextLink(std::string_view header) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t open = header.find('<', pos);
    if (open == std::string_view::npos) return "";
    size_t close = header.find('>', open);
    if (close == std::string_view::npos) return "";
    size_t end = header.find('<', close);  // the next entry, if any
    std::string_view params = header.substr(
        close + 1, end == std::string_view::npos ? std::string_view::npos : end - close - 1);
    std::string lower = AsciiLower(params);
    if (lower.find("rel=\"next\"") != std::string::npos ||
        lower.find("rel=next") != std::string::npos) {
      return std::string(header.substr(open + 1, close - open - 1));
    }
    pos = close + 1;
  }
  return "";
}

}  // namespace

Result<ManifestResponse> Client::Impl::GetManifest(const Reference& repo,
                                                   std::string_view tag_or_digest) {
  IMGFS_ASSIGN_OR_RETURN(bool by_digest, CheckTagOrDigest(tag_or_digest));
  Call call;
  call.repo = &repo;
  call.path = "/v2/" + repo.repository + "/manifests/" + std::string(tag_or_digest);
  call.headers.push_back("Accept: " + ManifestAcceptHeader());
  call.max_body = kMaxManifestBytes;
  call.what = repo.Repo() + (by_digest ? "@" : ":") + std::string(tag_or_digest);
  HttpResponse resp;
  IMGFS_RETURN_IF_ERROR(Send(call, &resp));
  if (resp.status != 200) return MapStatus(call, resp, /*manifest=*/true);
  if (resp.truncated) {
    return Status::Corrupt("manifest " + call.what + " is larger than " +
                           std::to_string(kMaxManifestBytes >> 20) + " MiB");
  }
  ManifestResponse out;
  out.digest = Sha256Digest(resp.body);
  if (by_digest && out.digest != tag_or_digest) {
    return Status::DigestMismatch("manifest " + call.what +
                                  ": the registry sent bytes with digest " + out.digest);
  }
  std::string sent = resp.Header("docker-content-digest");
  if (!by_digest && !sent.empty() && ValidateDigest(sent).ok() && sent != out.digest) {
    return Status::DigestMismatch("manifest " + call.what + ": Docker-Content-Digest says " + sent +
                                  " but the bytes hash to " + out.digest);
  }
  out.media_type = BareContentType(resp.Header("content-type"));
  out.bytes = std::move(resp.body);
  return out;
}

Result<std::string> Client::Impl::HeadManifest(const Reference& repo,
                                               std::string_view tag_or_digest) {
  IMGFS_ASSIGN_OR_RETURN(bool by_digest, CheckTagOrDigest(tag_or_digest));
  Call call;
  call.repo = &repo;
  call.method = "HEAD";
  call.path = "/v2/" + repo.repository + "/manifests/" + std::string(tag_or_digest);
  call.headers.push_back("Accept: " + ManifestAcceptHeader());
  call.what = repo.Repo() + (by_digest ? "@" : ":") + std::string(tag_or_digest);
  HttpResponse resp;
  IMGFS_RETURN_IF_ERROR(Send(call, &resp));
  if (resp.status != 200) return MapStatus(call, resp, /*manifest=*/true);
  std::string digest = resp.Header("docker-content-digest");
  if (!digest.empty() && ValidateDigest(digest).ok()) return digest;
  // Not every registry sends the header on HEAD; the bytes decide then.
  IMGFS_ASSIGN_OR_RETURN(ManifestResponse full, GetManifest(repo, tag_or_digest));
  return full.digest;
}

Result<std::vector<std::string>> Client::Impl::ListTags(const Reference& repo) {
  std::vector<std::string> tags;
  const std::string first = "/v2/" + repo.repository + "/tags/list";
  std::string path = first;
  for (int page = 1;; ++page) {
    if (page > kMaxTagPages) {
      return Status::Corrupt("registry " + repo.domain + " sent more than " +
                             std::to_string(kMaxTagPages) + " pages of tags for " + repo.Repo());
    }
    Call call;
    call.repo = &repo;
    call.path = path;
    call.max_body = 16 << 20;
    call.what = "the tags of " + repo.Repo();
    HttpResponse resp;
    IMGFS_RETURN_IF_ERROR(Send(call, &resp));
    if (resp.status == 404) {
      return Status::NotFound("repository not found: " + repo.Repo() +
                              " (check the name, or whether you need to log in)");
    }
    if (resp.status != 200) return MapStatus(call, resp, /*manifest=*/false);
    json doc = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
    if (resp.truncated || !doc.is_object()) {
      return Status::Corrupt("registry " + repo.domain + " sent an unreadable tags list for " +
                             repo.Repo());
    }
    auto list = doc.find("tags");
    if (list != doc.end() && !list->is_null()) {
      if (!list->is_array()) {
        return Status::Corrupt("registry " + repo.domain + " sent a tags list for " + repo.Repo() +
                               " whose \"tags\" is not an array");
      }
      for (const json& t : *list) {
        if (!t.is_string()) {
          return Status::Corrupt("registry " + repo.domain + " sent a tag of " + repo.Repo() +
                                 " that is not a string");
        }
        if (tags.size() >= kMaxTags) {
          return Status::Corrupt("registry " + repo.domain + " lists more than " +
                                 std::to_string(kMaxTags) + " tags for " + repo.Repo());
        }
        tags.push_back(t.get<std::string>());
      }
    }
    std::string next = NextLink(resp.Header("link"));
    if (next.empty()) return tags;
    // The link is a path on the registry, or an absolute URL that must name the registry.
    auto [scheme, authority] = UrlSchemeAndAuthority(next);
    if (!scheme.empty()) {
      if (UrlSchemeAndAuthority(BaseUrl(repo)) != std::make_pair(scheme, authority)) {
        return Status::Corrupt("registry " + repo.domain + " links the next page of tags to " +
                               "another host: " + next);
      }
      next = next.substr(scheme.size() + 3 + authority.size());
    }
    if (next.rfind(first, 0) != 0 || next == path) {
      return Status::Corrupt("registry " + repo.domain + " links the next page of tags of " +
                             repo.Repo() + " to " + next);
    }
    path = next;
  }
}

Result<bool> Client::Impl::CheckTagOrDigest(std::string_view tag_or_digest) {
  if (tag_or_digest.find(':') != std::string_view::npos) {
    IMGFS_RETURN_IF_ERROR(ValidateDigest(tag_or_digest));
    return true;
  }
  bool ok = !tag_or_digest.empty() && tag_or_digest.size() <= 128 &&
            std::all_of(tag_or_digest.begin(), tag_or_digest.end(), [](char c) {
              return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                     c == '-';
            });
  if (!ok) return Status::InvalidArgument("invalid tag '" + std::string(tag_or_digest) + "'");
  return false;
}

Result<ManifestResponse> Client::GetManifest(const Reference& repo,
                                             std::string_view tag_or_digest) {
  return impl_->GetManifest(repo, tag_or_digest);
}

Result<std::string> Client::HeadManifest(const Reference& repo, std::string_view tag_or_digest) {
  return impl_->HeadManifest(repo, tag_or_digest);
}

Result<std::vector<std::string>> Client::ListTags(const Reference& repo) {
  return impl_->ListTags(repo);
}

}  // namespace imgfs::registry
