// registry::Client: credentials, the registries' 401 challenges, Basic and Bearer
// authorization, and the token cache.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "registry/client_impl.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

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

}  // namespace

Result<std::optional<Credentials>> Client::Impl::CredentialsFor(const Reference& repo) {
  {
    MutexLock lock(&mu_);
    if (auto it = creds_.find(repo.domain); it != creds_.end()) return it->second;
  }
  IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c,
                         LookupCredentials(options_.docker_config_dir, repo.domain));
  MutexLock lock(&mu_);
  creds_[repo.domain] = c;
  return c;
}

std::string Client::Impl::AuthRequiredMessage(const Reference& repo) const {
  return "authentication required for " + repo.Repo() +
         " (or it does not exist): run `docker login " + repo.domain +
         "` or set credentials in $DOCKER_CONFIG/config.json";
}

Status Client::Impl::AuthFailed(const Reference& repo, bool sent_auth,
                                const HttpResponse& resp) {
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

std::string Client::Impl::TokenKey(const AuthChallenge& c, const std::string& scope) {
  auto get = [&](const char* k) {
    auto it = c.params.find(k);
    return it == c.params.end() ? std::string() : it->second;
  };
  return get("realm") + "\n" + get("service") + "\n" + scope;
}

Result<std::optional<std::string>> Client::Impl::AuthorizationFor(const Reference& repo) {
  AuthChallenge challenge;
  {
    MutexLock lock(&mu_);
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
    MutexLock lock(&mu_);
    auto it = tokens_.find(key);
    if (it != tokens_.end() && it->second.expires > Clock::now()) {
      return std::optional<std::string>("Bearer " + it->second.token);
    }
  }
  IMGFS_ASSIGN_OR_RETURN(std::string token, FetchToken(repo, challenge));
  return std::optional<std::string>("Bearer " + token);
}

Status Client::Impl::Authenticate(const Reference& repo, const HttpResponse& resp,
                                  bool sent_auth) {
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
    MutexLock lock(&mu_);
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

Result<std::string> Client::Impl::FetchToken(const Reference& repo,
                                             const AuthChallenge& challenge) {
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
  MutexLock lock(&mu_);
  tokens_[TokenKey(challenge, scope)] =
      Token{token, Clock::now() + std::chrono::seconds(expires_in - 10)};
  return token;
}

}  // namespace imgfs::registry
