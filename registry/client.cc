#include "registry/client.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/log.h"
#include "registry/auth.h"
#include "registry/manifest.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kMaxRedirects = 5;
// Bytes a 206 answer may run past the requested range before the transfer is cut off.
constexpr uint64_t kMaxRangeOverrun = 64 << 10;

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string BareContentType(std::string_view t) {
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  std::string out(t);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string UrlEncode(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

struct RegistryError {
  std::string code;
  std::string message;
};

// The first entry of the distribution spec's {"errors":[{"code":..,"message":..}]} body.
RegistryError ParseRegistryError(std::string_view body) {
  RegistryError e;
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return e;
  auto errors = doc.find("errors");
  if (errors == doc.end() || !errors->is_array() || errors->empty()) return e;
  const json& first = (*errors)[0];
  if (!first.is_object()) return e;
  if (auto c = first.find("code"); c != first.end() && c->is_string()) e.code = c->get<std::string>();
  if (auto m = first.find("message"); m != first.end() && m->is_string()) {
    e.message = m->get<std::string>();
  }
  return e;
}

// "bytes <first>-<last>/<total or *>" -> first and last.
bool ParseContentRange(std::string_view v, uint64_t* first, uint64_t* last) {
  if (v.rfind("bytes ", 0) != 0) return false;
  v.remove_prefix(6);
  size_t dash = v.find('-');
  size_t slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) return false;
  auto parse = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 19) return false;
    uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    *out = n;
    return true;
  };
  return parse(v.substr(0, dash), first) && parse(v.substr(dash + 1, slash - dash - 1), last);
}

// The target of the `rel="next"` entry of a Link header ("" when there is none).
std::string NextLink(std::string_view header) {
  size_t pos = 0;
  while (pos < header.size()) {
    size_t open = header.find('<', pos);
    if (open == std::string_view::npos) return "";
    size_t close = header.find('>', open);
    if (close == std::string_view::npos) return "";
    size_t end = header.find('<', close);  // the next entry, if any
    std::string_view params = header.substr(close + 1, end == std::string_view::npos
                                                           ? std::string_view::npos
                                                           : end - close - 1);
    std::string lower(params);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower.find("rel=\"next\"") != std::string::npos ||
        lower.find("rel=next") != std::string::npos) {
      return std::string(header.substr(open + 1, close - open - 1));
    }
    pos = close + 1;
  }
  return "";
}

}  // namespace

class Client::Impl {
 public:
  Impl(ClientOptions options, std::unique_ptr<HttpTransport> transport)
      : options_(std::move(options)), transport_(std::move(transport)) {
    if (options_.max_attempts < 1) options_.max_attempts = 1;
    if (options_.max_transfer_failures < 1) options_.max_transfer_failures = 1;
  }

  // One logical request to the registry of `repo`.
  struct Call {
    const Reference* repo = nullptr;
    std::string method = "GET";
    std::string path;  // "/v2/..."
    std::vector<std::string> headers;
    std::function<bool(std::string_view)> sink;
    uint64_t max_body = 64 << 10;
    std::string what;  // what was asked for, for messages
    std::string base;  // "scheme://host[:port]" to send to; "" = the registry of `repo`
    // Failed attempts of the blob transfer this call belongs to (nullptr: not a blob
    // transfer); every failed attempt counts, and none is retried once it reaches
    // ClientOptions::max_transfer_failures.
    int* failures = nullptr;
  };

  Result<ManifestResponse> GetManifest(const Reference& repo, std::string_view tag_or_digest) {
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
      return Status::DigestMismatch("manifest " + call.what + ": the registry sent bytes with digest " +
                                    out.digest);
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

  Result<std::string> HeadManifest(const Reference& repo, std::string_view tag_or_digest) {
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

  Result<std::vector<std::string>> ListTags(const Reference& repo) {
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
          return Status::Corrupt("registry " + repo.domain + " sent a tags list for " +
                                 repo.Repo() + " whose \"tags\" is not an array");
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

  // Streams [off, off + len) of a blob (to its end when len is nullopt) through `sink`.
  Status StreamBlob(const Reference& repo, std::string_view digest, uint64_t off,
                    std::optional<uint64_t> len,
                    const std::function<Status(std::string_view)>& sink) {
    Status valid = ValidateDigest(digest);
    if (!valid.ok()) return Status(valid.code(), "blob of " + repo.Repo() + ": " + valid.message());
    if (len && *len == 0) return Status::Ok();
    if (len && *len > std::numeric_limits<uint64_t>::max() - off) {
      return Status::InvalidArgument("blob range overflows");
    }
    const uint64_t end = len ? off + *len : std::numeric_limits<uint64_t>::max();
    uint64_t pos = off;
    int failures = 0;
    while (true) {
      Call call;
      call.repo = &repo;
      call.path = "/v2/" + repo.repository + "/blobs/" + std::string(digest);
      call.what = repo.Repo() + "@" + std::string(digest);
      call.failures = &failures;
      if (pos > 0 || len) {
        call.headers.push_back("Range: bytes=" + std::to_string(pos) + "-" +
                               (len ? std::to_string(end - 1) : std::string()));
      }
      HttpResponse resp;
      Status sink_status;
      bool checked = false;
      uint64_t skip = 0;
      uint64_t overrun = 0;  // bytes after the range's end in a 206 response
      const uint64_t attempt_start = pos;
      call.sink = [&](std::string_view chunk) {
        if (!checked) {
          checked = true;
          if (resp.status == 206) {
            uint64_t first = 0;
            uint64_t last = 0;
            std::string range = resp.Header("content-range");
            if (!ParseContentRange(range, &first, &last) || first != pos ||
                (len && last != end - 1) || last < first) {
              sink_status = Status::Corrupt("registry " + repo.domain + " answered the range " +
                                            std::to_string(pos) + "-" +
                                            (len ? std::to_string(end - 1) : std::string()) +
                                            " of " + call.what + " with Content-Range '" + range + "'");
              return false;
            }
          } else {
            skip = pos;  // the whole blob from byte 0: Range was ignored
          }
        }
        if (skip > 0) {
          uint64_t n = std::min<uint64_t>(skip, chunk.size());
          chunk.remove_prefix(static_cast<size_t>(n));
          skip -= n;
        }
        uint64_t take = std::min<uint64_t>(chunk.size(), end - pos);
        if (take > 0) {
          Status s = sink(chunk.substr(0, static_cast<size_t>(take)));
          pos += take;
          if (!s.ok()) {
            sink_status = s;
            return false;
          }
        }
        if (pos < end) return true;
        // Done. An exact 206 is let run to its end, which is here or a few bytes on: aborting
        // a transfer closes its connection, and the next range request would pay a new one.
        // A whole blob sent for a range (200) is cut off at once.
        overrun += chunk.size() - take;
        return resp.status == 206 && overrun <= kMaxRangeOverrun;
      };
      Status st = Send(call, &resp);
      if (!sink_status.ok()) return sink_status;
      if (st.ok()) {
        if (resp.status < 200 || resp.status >= 300) return MapStatus(call, resp, /*manifest=*/false);
        if (!len || pos == end) return Status::Ok();
        return Status::Corrupt("blob " + call.what + " ended at byte " + std::to_string(pos) +
                               ", before the end of the requested range " + std::to_string(end));
      }
      if (st.code() == Code::kUnavailable && pos > attempt_start && !Cancelled() &&
          failures < options_.max_transfer_failures) {
        IMGFS_LOG(kInfo, "resuming " << call.what << " at byte " << pos << " after: " << st.message());
        continue;
      }
      if (st.code() == Code::kUnavailable && failures >= options_.max_transfer_failures) {
        return Status::Unavailable(st.message() + " (gave up on " + call.what + " after " +
                                   std::to_string(failures) + " failed attempts)");
      }
      return st;
    }
  }

 private:
  static Result<bool> CheckTagOrDigest(std::string_view tag_or_digest) {
    if (tag_or_digest.find(':') != std::string_view::npos) {
      IMGFS_RETURN_IF_ERROR(ValidateDigest(tag_or_digest));
      return true;
    }
    bool ok = !tag_or_digest.empty() && tag_or_digest.size() <= 128 &&
              std::all_of(tag_or_digest.begin(), tag_or_digest.end(), [](char c) {
                return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
              });
    if (!ok) return Status::InvalidArgument("invalid tag '" + std::string(tag_or_digest) + "'");
    return false;
  }

  std::string BaseUrl(const Reference& repo) const {
    return std::string(repo.IsInsecureLoopback() ? "http://" : "https://") + repo.ApiHost();
  }

  static std::string Scope(const Reference& repo) {
    return "repository:" + repo.repository + ":pull";
  }

  // Sends `call`, authenticating, following redirects and retrying. OK means some HTTP answer
  // came back from the final location; *resp holds it (a 401 from the registry is already
  // turned into a Status here). Docker Hub requests try the configured mirrors first, each
  // once, and fall back to the next source on any failure that delivered no bytes.
  Status Send(const Call& call, HttpResponse* resp) {
    if (call.repo->domain == "docker.io") {
      for (const std::string& mirror : options_.mirrors) {
        auto [scheme, authority] = UrlSchemeAndAuthority(mirror);
        if (scheme.empty() || authority.empty()) continue;
        // The mirror is a registry of its own: its challenges, tokens and credentials.
        Reference via = *call.repo;
        via.domain = authority;
        Call mirrored = call;
        mirrored.repo = &via;
        mirrored.base = scheme + "://" + authority;
        uint64_t delivered = 0;
        Status st = SendTo(mirrored, resp, /*max_attempts=*/1, &delivered);
        if (delivered > 0) return st;
        if (st.ok() && resp->status >= 200 && resp->status < 300) return st;
        IMGFS_LOG(kInfo, "mirror " << authority << " did not serve " << call.what << " ("
                                   << (st.ok() ? "HTTP " + std::to_string(resp->status) : st.message())
                                   << "); trying the next source");
      }
    }
    uint64_t delivered = 0;
    return SendTo(call, resp, options_.max_attempts, &delivered);
  }

  Status SendTo(const Call& call, HttpResponse* resp, int max_attempts, uint64_t* delivered) {
    const Reference& repo = *call.repo;
    Call counted = call;
    if (call.sink) {
      counted.sink = [&](std::string_view chunk) {
        *delivered += chunk.size();
        return call.sink(chunk);
      };
    }
    bool challenged = false;
    for (int attempt = 1;; ++attempt) {
      bool sent_auth = false;
      bool from_registry = true;
      if (Cancelled()) return Status::Unavailable("transfer of " + call.what + " cancelled");
      Status st = SendOnce(counted, resp, &sent_auth, &from_registry);
      if (!st.ok()) {
        bool budget_left = CountFailure(call);
        // A certificate the registry will present again is not worth retrying.
        bool tls_refused = st.message().find("certificate") != std::string::npos;
        if (st.code() != Code::kUnavailable || *delivered > 0 || tls_refused ||
            attempt >= max_attempts || !budget_left || Cancelled()) {
          return st;
        }
        Backoff(attempt, 0);
        continue;
      }
      if (resp->status == 401 && from_registry) {
        if (challenged) return AuthFailed(repo, sent_auth, *resp);
        challenged = true;
        IMGFS_RETURN_IF_ERROR(Authenticate(repo, *resp, sent_auth));
        --attempt;  // the challenge round is not a failure
        continue;
      }
      if ((resp->status == 429 || resp->status >= 500) && attempt < max_attempts &&
          CountFailure(call) && !Cancelled()) {
        int retry_after = std::atoi(resp->Header("retry-after").c_str());
        IMGFS_LOG(kInfo, "HTTP " << resp->status << " for " << call.what << ", retrying");
        Backoff(attempt, retry_after);
        continue;
      }
      return Status::Ok();
    }
  }

  // One request and its redirects, with the registry's Authorization on registry URLs only.
  Status SendOnce(const Call& call, HttpResponse* resp, bool* sent_auth, bool* from_registry) {
    const Reference& repo = *call.repo;
    const std::string base = call.base.empty() ? BaseUrl(repo) : call.base;
    const auto registry_origin = UrlSchemeAndAuthority(base);
    std::string url = base + call.path;
    for (int hop = 0; hop <= kMaxRedirects; ++hop) {
      HttpRequest req;
      req.method = call.method;
      req.url = url;
      req.headers = call.headers;
      req.sink = call.sink;
      req.max_body = call.max_body;
      req.cancel = options_.cancel;
      *from_registry = UrlSchemeAndAuthority(url) == registry_origin;
      *sent_auth = false;
      if (*from_registry) {
        IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> auth, AuthorizationFor(repo));
        if (auth) {
          req.headers.push_back("Authorization: " + *auth);
          *sent_auth = true;
        }
      }
      Status st = transport_->Perform(req, resp);
      if (!st.ok()) {
        IMGFS_LOG(kDebug, req.method << " " << url << ": " << st.message());
        std::string host = *from_registry ? repo.domain : UrlSchemeAndAuthority(url).second;
        std::string hint;
        if (st.message().find("certificate") != std::string::npos) {
          hint = " (if the registry uses a private CA, put it in " + options_.certs_dir + "/" +
                 UrlSchemeAndAuthority(url).second + "/ca.crt)";
        }
        return Status::Unavailable("registry " + host + " unreachable: " + st.message() + hint);
      }
      IMGFS_LOG(kDebug, req.method << " " << url << ": HTTP " << resp->status);
      if (!IsRedirect(resp->status)) return Status::Ok();
      std::string location = resp->Header("location");
      if (location.empty()) {
        return Status::Corrupt("registry " + repo.domain + " redirected " + call.what +
                               " without a Location");
      }
      url = ResolveUrl(url, location);
      if (UrlSchemeAndAuthority(url).first.empty()) {
        return Status::Corrupt("registry " + repo.domain + " redirected " + call.what +
                               " to an invalid location '" + location + "'");
      }
    }
    return Status::Corrupt("more than " + std::to_string(kMaxRedirects) + " redirects for " + call.what);
  }

  bool Cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }

  // Counts a failed attempt of `call`'s blob transfer; false when no attempt is left.
  bool CountFailure(const Call& call) const {
    if (call.failures == nullptr) return true;
    return ++*call.failures < options_.max_transfer_failures;
  }

  void Backoff(int attempt, int retry_after_s) {
    int64_t ms = static_cast<int64_t>(options_.retry_base_delay_ms) << std::min(attempt - 1, 10);
    ms = std::min<int64_t>(ms, 8000);
    if (retry_after_s > 0) ms = std::max<int64_t>(ms, std::min(retry_after_s, 30) * 1000LL);
    // In slices, so that a cancel does not wait for the whole delay.
    const auto until = Clock::now() + std::chrono::milliseconds(ms);
    while (!Cancelled() && Clock::now() < until) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
      std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(50)));
    }
  }

  Status MapStatus(const Call& call, const HttpResponse& resp, bool manifest) {
    const Reference& repo = *call.repo;
    RegistryError e = ParseRegistryError(resp.body);
    std::string detail = e.message.empty() ? std::string() : ": " + e.message;
    std::string http = " (HTTP " + std::to_string(resp.status) + ")";
    switch (resp.status) {
      case 404:
        if (e.code == "NAME_UNKNOWN") {
          return Status::NotFound("repository not found: " + repo.Repo() +
                                  " (check the name, or whether you need to log in)");
        }
        if (manifest) {
          // Most registries answer MANIFEST_UNKNOWN for an unknown repository as well.
          return Status::NotFound("manifest unknown: " + call.what +
                                  " (no such tag or digest in that repository, or no such "
                                  "repository)");
        }
        return Status::NotFound("blob unknown: " + call.what);
      case 401:
      case 403:
        return Status::Unauthorized("access to " + call.what + " denied" + http + detail);
      case 416:
        return Status::Corrupt("range not satisfiable for " + call.what +
                               ": the blob is smaller than expected");
      case 429:
        return Status::Unavailable("registry " + repo.domain + " is rate-limiting requests for " +
                                   call.what + http + detail);
      case 400:
        return Status::InvalidArgument("registry " + repo.domain + " rejected the request for " +
                                       call.what + http + detail);
      case 405:
      case 501:
        return Status::Unsupported("registry " + repo.domain + " does not support the request for " +
                                   call.what + http + detail);
      default:
        if (resp.status >= 500) {
          return Status::Unavailable("registry " + repo.domain + " failed to serve " + call.what +
                                     http + " after " + std::to_string(options_.max_attempts) +
                                     " attempts" + detail);
        }
        return Status::Corrupt("registry " + repo.domain + " answered " + call.what + http + detail);
    }
  }

  // ---- authentication ----

  Result<std::optional<Credentials>> CredentialsFor(const Reference& repo) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = creds_.find(repo.domain); it != creds_.end()) return it->second;
    }
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c,
                           LookupCredentials(options_.docker_config_dir, repo.domain));
    std::lock_guard<std::mutex> lock(mu_);
    creds_[repo.domain] = c;
    return c;
  }

  std::string AuthRequiredMessage(const Reference& repo) const {
    return "authentication required for " + repo.Repo() +
           " (or it does not exist): run `docker login " + repo.domain +
           "` or set credentials in $DOCKER_CONFIG/config.json";
  }

  Status AuthFailed(const Reference& repo, bool sent_auth, const HttpResponse& resp) {
    RegistryError e = ParseRegistryError(resp.body);
    std::string detail = e.message.empty() ? std::string() : " (" + e.message + ")";
    auto creds = CredentialsFor(repo);
    bool have_creds = creds.ok() && creds->has_value();
    if (have_creds && sent_auth) {
      return Status::Unauthorized(repo.domain + " refused the credentials for " + repo.Repo() +
                                  detail);
    }
    return Status::Unauthorized(AuthRequiredMessage(repo) + detail);
  }

  static std::string TokenKey(const AuthChallenge& c, const std::string& scope) {
    auto get = [&](const char* k) {
      auto it = c.params.find(k);
      return it == c.params.end() ? std::string() : it->second;
    };
    return get("realm") + "\n" + get("service") + "\n" + scope;
  }

  // The Authorization value to send to `repo`'s registry, from what its last challenge asked.
  Result<std::optional<std::string>> AuthorizationFor(const Reference& repo) {
    AuthChallenge challenge;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = challenges_.find(repo.ApiHost());
      if (it == challenges_.end()) return std::optional<std::string>();
      challenge = it->second;
    }
    if (challenge.scheme == "basic") {
      IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, CredentialsFor(repo));
      if (!c || (c->username.empty() && c->password.empty())) return std::optional<std::string>();
      return std::optional<std::string>("Basic " + EncodeBase64(c->username + ":" + c->password));
    }
    std::string key = TokenKey(challenge, Scope(repo));
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = tokens_.find(key);
      if (it != tokens_.end() && it->second.expires > Clock::now()) {
        return std::optional<std::string>("Bearer " + it->second.token);
      }
    }
    IMGFS_ASSIGN_OR_RETURN(std::string token, FetchToken(repo, challenge));
    return std::optional<std::string>("Bearer " + token);
  }

  // Learns the challenge of a 401 and, for Bearer, fetches a fresh token.
  Status Authenticate(const Reference& repo, const HttpResponse& resp, bool sent_auth) {
    std::vector<AuthChallenge> all;
    for (const std::string& h : resp.AllHeaders("www-authenticate")) {
      for (AuthChallenge& c : ParseWwwAuthenticate(h)) all.push_back(std::move(c));
    }
    const AuthChallenge* chosen = nullptr;
    for (const AuthChallenge& c : all) {
      if (c.scheme == "bearer") {
        chosen = &c;
        break;
      }
    }
    for (const AuthChallenge& c : all) {
      if (chosen == nullptr && c.scheme == "basic") chosen = &c;
    }
    if (chosen == nullptr) {
      return Status::Unauthorized("registry " + repo.domain + " asks for authentication for " +
                                  repo.Repo() + " with no challenge imgfs understands (Basic or Bearer)");
    }
    std::string key = TokenKey(*chosen, Scope(repo));
    {
      std::lock_guard<std::mutex> lock(mu_);
      challenges_[repo.ApiHost()] = *chosen;
      tokens_.erase(key);  // it was refused, or there was none
    }
    if (chosen->scheme == "basic") {
      IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, CredentialsFor(repo));
      if (!c || (c->username.empty() && c->password.empty())) {
        return Status::Unauthorized(AuthRequiredMessage(repo));
      }
      if (sent_auth) return Status::Unauthorized(repo.domain + " refused the credentials for " + repo.Repo());
      return Status::Ok();
    }
    return FetchToken(repo, *chosen).status();
  }

  Result<std::string> FetchToken(const Reference& repo, const AuthChallenge& challenge) {
    auto param = [&](const char* k) {
      auto it = challenge.params.find(k);
      return it == challenge.params.end() ? std::string() : it->second;
    };
    std::string realm = param("realm");
    auto [realm_scheme, realm_host] = UrlSchemeAndAuthority(realm);
    if (realm_scheme != "https" && realm_scheme != "http") {
      return Status::Unauthorized("registry " + repo.domain +
                                  " sent a Bearer challenge without a usable realm ('" + realm + "')");
    }
    std::string scope = Scope(repo);
    std::string url = realm + (realm.find('?') == std::string::npos ? "?" : "&");
    std::string service = param("service");
    if (!service.empty()) url += "service=" + UrlEncode(service) + "&";
    url += "scope=" + UrlEncode(scope);

    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> creds, CredentialsFor(repo));
    bool basic = creds && !(creds->username.empty() && creds->password.empty());
    if (creds && !basic && !creds->identity_token.empty()) {
      IMGFS_LOG(kWarning, "identity tokens (docker login with OAuth) are not supported; asking "
                              << realm_host << " for an anonymous token for " << repo.Repo());
    }
    HttpRequest req;
    req.url = url;
    req.max_body = 1 << 20;
    req.cancel = options_.cancel;
    if (basic) {
      req.headers.push_back("Authorization: Basic " +
                            EncodeBase64(creds->username + ":" + creds->password));
    }
    HttpResponse resp;
    for (int attempt = 1;; ++attempt) {
      Status st = transport_->Perform(req, &resp);
      if (!st.ok()) {
        if (attempt < options_.max_attempts) {
          Backoff(attempt, 0);
          continue;
        }
        return Status::Unavailable("token server " + realm_host + " of registry " + repo.domain +
                                   " unreachable: " + st.message());
      }
      if ((resp.status == 429 || resp.status >= 500) && attempt < options_.max_attempts) {
        Backoff(attempt, std::atoi(resp.Header("retry-after").c_str()));
        continue;
      }
      break;
    }
    if (resp.status == 401 || resp.status == 403) {
      if (basic) return Status::Unauthorized(repo.domain + " refused the credentials for " + repo.Repo());
      return Status::Unauthorized(AuthRequiredMessage(repo));
    }
    if (resp.status != 200) {
      return Status::Unavailable("token server " + realm_host + " answered HTTP " +
                                 std::to_string(resp.status) + " for " + repo.Repo());
    }
    json doc = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
    std::string token;
    int64_t expires_in = 60;
    if (doc.is_object()) {
      for (const char* k : {"token", "access_token"}) {
        auto it = doc.find(k);
        if (token.empty() && it != doc.end() && it->is_string()) token = it->get<std::string>();
      }
      auto ex = doc.find("expires_in");
      if (ex != doc.end() && ex->is_number_integer()) expires_in = ex->get<int64_t>();
    }
    if (token.empty()) {
      return Status::Corrupt("token server " + realm_host + " sent no token for " + repo.Repo());
    }
    // The spec's minimum lifetime is 60 s; renew a little early so a request never carries
    // a token that expires on the way.
    expires_in = std::clamp<int64_t>(expires_in, 60, 24 * 3600);
    std::lock_guard<std::mutex> lock(mu_);
    tokens_[TokenKey(challenge, scope)] =
        Token{token, Clock::now() + std::chrono::seconds(expires_in - 10)};
    return token;
  }

  struct Token {
    std::string token;
    Clock::time_point expires;
  };

  ClientOptions options_;
  std::unique_ptr<HttpTransport> transport_;
  std::mutex mu_;
  std::map<std::string, AuthChallenge> challenges_;              // GUARDED_BY(mu_), by ApiHost
  std::map<std::string, Token> tokens_;                          // GUARDED_BY(mu_)
  std::map<std::string, std::optional<Credentials>> creds_;      // GUARDED_BY(mu_), by domain
};

std::vector<std::string> DockerDaemonMirrors(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  if (!in) return out;
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return out;
  auto mirrors = doc.find("registry-mirrors");
  if (mirrors == doc.end() || !mirrors->is_array()) return out;
  for (const json& m : *mirrors) {
    if (m.is_string() && !UrlSchemeAndAuthority(m.get<std::string>()).first.empty()) {
      out.push_back(m.get<std::string>());
    }
  }
  return out;
}

namespace {

CurlTransportOptions TransportOptionsFor(const ClientOptions& options) {
  CurlTransportOptions out;
  out.user_agent = options.user_agent;
  out.certs_dir = options.certs_dir;
  out.stall_timeout_s = std::max(1, options.stall_timeout_s);
  return out;
}

}  // namespace

Client::Client(ClientOptions options)
    : Client(options, NewCurlTransport(TransportOptionsFor(options))) {}

Client::Client(ClientOptions options, std::unique_ptr<HttpTransport> transport)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(transport))) {}

Client::~Client() = default;

Result<ManifestResponse> Client::GetManifest(const Reference& repo, std::string_view tag_or_digest) {
  return impl_->GetManifest(repo, tag_or_digest);
}

Result<std::string> Client::HeadManifest(const Reference& repo, std::string_view tag_or_digest) {
  return impl_->HeadManifest(repo, tag_or_digest);
}

Result<std::vector<std::string>> Client::ListTags(const Reference& repo) {
  return impl_->ListTags(repo);
}

Status Client::GetBlobRange(const Reference& repo, std::string_view digest, uint64_t off,
                            uint64_t len, std::string* out) {
  std::string buf;
  if (len <= (256u << 20)) buf.reserve(static_cast<size_t>(len));
  IMGFS_RETURN_IF_ERROR(impl_->StreamBlob(repo, digest, off, len, [&](std::string_view chunk) {
    buf.append(chunk);
    return Status::Ok();
  }));
  out->append(buf);
  return Status::Ok();
}

Status Client::GetBlob(const Reference& repo, std::string_view digest,
                       const std::function<Status(std::string_view)>& sink) {
  return impl_->StreamBlob(repo, digest, 0, std::nullopt, sink);
}

Result<std::string> Client::GetBlobVerified(const Reference& repo, std::string_view digest,
                                            uint64_t max_size) {
  std::string buf;
  Sha256 hash;
  IMGFS_RETURN_IF_ERROR(impl_->StreamBlob(repo, digest, 0, std::nullopt, [&](std::string_view chunk) {
    if (buf.size() + chunk.size() > max_size) {
      return Status::Corrupt("blob " + repo.Repo() + "@" + std::string(digest) + " is larger than " +
                             std::to_string(max_size) + " bytes");
    }
    buf.append(chunk);
    hash.Update(chunk);
    return Status::Ok();
  }));
  std::string got = hash.FinishDigest();
  if (got != digest) {
    return Status::DigestMismatch("blob " + repo.Repo() + "@" + std::string(digest) +
                                  ": the registry sent bytes with digest " + got);
  }
  return buf;
}

}  // namespace imgfs::registry
