// registry::Client: credentials, the registries' 401 challenges, Basic and Bearer
// authorization, and the token cache.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "base/log.h"
#include "registry/client_impl.h"
#include "registry/endpoint.h"
#include "registry/token.h"

namespace imgfs::registry {
namespace {

// How `imgfs login` is spelled for the registry of `domain`.
std::string LoginCommand(const std::string& domain) {
  return domain == "docker.io" ? "imgfs login" : "imgfs login " + domain;
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
  return "authentication required for " + repo.Repo() + " (or it does not exist) and no " +
         "credentials for " + repo.domain + " were found: run `" + LoginCommand(repo.domain) +
         "` (docker's config.json, its credential helpers and podman's auth.json are read)";
}

std::string Client::Impl::RefusedMessage(const Reference& repo) {
  auto creds = CredentialsFor(repo);
  std::string whose;
  if (creds.ok() && creds->has_value()) {
    const Credentials& c = **creds;
    whose = c.identity_token.empty() ? " (user '" + c.username + "'" : " (an identity token";
    whose += c.source.empty() ? ")" : ", from " + c.source + ")";
  }
  return repo.domain + " refused the credentials for " + repo.Repo() + whose +
         ": wrong or expired; run `" + LoginCommand(repo.domain) + "` again";
}

Status Client::Impl::AuthFailed(const Reference& repo, bool sent_auth, const HttpResponse& resp) {
  RegistryError e = ParseRegistryError(resp.body);
  std::string detail = e.message.empty() ? std::string() : " (" + e.message + ")";
  auto creds = CredentialsFor(repo);
  bool have_creds = creds.ok() && creds->has_value();
  if (have_creds && sent_auth) return Status::Unauthorized(RefusedMessage(repo) + detail);
  return Status::Unauthorized(AuthRequiredMessage(repo) + detail);
}

std::string Client::Impl::TokenKey(const AuthChallenge& c, const std::string& scope) {
  auto get = [&](const char* k) {
    auto it = c.params.find(k);
    return it == c.params.end() ? std::string() : it->second;
  };
  return get("realm") + "\n" + get("service") + "\n" + scope;
}

Result<std::optional<std::string>> Client::Impl::AuthorizationFor(const Reference& repo,
                                                                  bool push) {
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
  const std::string scope = Scope(repo, push);
  std::string key = TokenKey(challenge, scope);
  {
    MutexLock lock(&mu_);
    auto it = tokens_.find(key);
    if (it != tokens_.end() && it->second.expires > Clock::now()) {
      return std::optional<std::string>("Bearer " + it->second.token);
    }
  }
  IMGFS_ASSIGN_OR_RETURN(std::string token, FetchToken(repo, challenge, scope));
  return std::optional<std::string>("Bearer " + token);
}

Status Client::Impl::Authenticate(const Reference& repo, const HttpResponse& resp, bool sent_auth,
                                  bool push) {
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
                                repo.Repo() +
                                " with no challenge imgfs understands (Basic or Bearer)");
  }
  const std::string scope = Scope(repo, push);
  std::string key = TokenKey(*chosen, scope);
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
    if (sent_auth) return Status::Unauthorized(RefusedMessage(repo));
    return Status::Ok();
  }
  return FetchToken(repo, *chosen, scope).status();
}

Result<std::string> Client::Impl::FetchToken(const Reference& repo, const AuthChallenge& challenge,
                                             const std::string& scope) {
  auto param = [&](const char* k) {
    auto it = challenge.params.find(k);
    return it == challenge.params.end() ? std::string() : it->second;
  };
  std::string realm = param("realm");
  auto [realm_scheme, realm_host] = UrlSchemeAndAuthority(realm);
  if (realm_scheme != "https" && realm_scheme != "http") {
    return Status::Unauthorized("registry " + repo.domain +
                                " sent a Bearer challenge without a usable realm ('" + realm +
                                "')");
  }
  IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> creds, CredentialsFor(repo));
  TokenRequest token_request;
  token_request.realm = realm;
  token_request.service = param("service");
  token_request.scopes = {scope};
  token_request.credentials = creds ? &*creds : nullptr;
  HttpRequest req = BuildTokenRequest(token_request);
  req.cancel = options_.cancel;
  req.verify_tls = !IsInsecureRegistry(realm_host, options_.insecure_registries);
  const bool sent_credentials = creds && (UsesRefreshGrant(&*creds) || !creds->username.empty() ||
                                          !creds->password.empty());
  HttpResponse resp;
  for (int attempt = 1;; ++attempt) {
    Status st = transport_->Perform(req, &resp);
    if (!st.ok()) {
      if (attempt < options_.max_attempts &&
          st.message().find("certificate") == std::string::npos) {
        Backoff(attempt, 0);
        continue;
      }
      return Status::Unavailable("token server " + realm_host + " of registry " + repo.domain +
                                 " unreachable: " + st.message() +
                                 CertificateHint(st.message(), realm_host, options_.certs_dir));
    }
    if ((resp.status == 429 || resp.status >= 500) && attempt < options_.max_attempts) {
      Backoff(attempt, std::atoi(resp.Header("retry-after").c_str()));
      continue;
    }
    break;
  }
  if (resp.status == 401 || resp.status == 403 ||
      (resp.status == 400 && UsesRefreshGrant(token_request.credentials))) {
    // OAuth2 servers answer a refresh token they no longer accept with 400 invalid_grant.
    if (sent_credentials) return Status::Unauthorized(RefusedMessage(repo));
    return Status::Unauthorized(AuthRequiredMessage(repo));
  }
  if (resp.status != 200) {
    return Status::Unavailable("token server " + realm_host + " answered HTTP " +
                               std::to_string(resp.status) + " for " + repo.Repo());
  }
  Result<TokenAnswer> answer = ParseTokenAnswer(resp, realm_host);
  if (!answer.ok()) {
    return Status(answer.status().code(), answer.status().message() + " for " + repo.Repo());
  }
  const std::string token = answer->token;
  const int64_t expires_in = answer->expires_in_s;
  // The spec's minimum lifetime is 60 s (ParseTokenAnswer's floor); renew a little early so
  // a request never carries a token that expires on the way.
  MutexLock lock(&mu_);
  tokens_[TokenKey(challenge, scope)] = Token{token,
                                              Clock::now() + std::chrono::seconds(expires_in - 10)};
  return token;
}

}  // namespace imgfs::registry
