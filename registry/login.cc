#include "registry/login.h"

#include <optional>
#include <vector>

#include "base/base64.h"
#include "base/log.h"
#include "registry/auth.h"
#include "registry/endpoint.h"
#include "registry/token.h"

namespace imgfs::registry {
namespace {

std::string ApiHostOf(std::string_view domain) {
  return domain == "docker.io" ? "registry-1.docker.io" : std::string(domain);
}

Status Refused(std::string_view domain, const Credentials& c) {
  std::string who = c.username.empty() ? "the identity token" : "user '" + c.username + "'";
  return Status::Unauthorized("login to " + std::string(domain) + " failed: the registry refused " +
                              who + " (wrong user name or password?)");
}

}  // namespace

Result<Credentials> CheckLogin(HttpTransport& transport, const ClientOptions& options,
                               std::string_view domain, const Credentials& credentials) {
  const std::string host = ApiHostOf(domain);
  // /v2/ without credentials, on the first endpoint that answers at all.
  HttpRequest probe;
  HttpResponse resp;
  Status reached = Status::Unavailable("no endpoint");
  for (const Endpoint& e :
       RegistryEndpoints(host, options.insecure_registries, options.certs_dir)) {
    probe.url = e.base + "/v2/";
    probe.verify_tls = e.verify_tls;
    probe.cancel = options.cancel;
    reached = transport.Perform(probe, &resp);
    if (reached.ok()) break;
    IMGFS_LOG(kInfo, "GET " << probe.url << ": " << reached.message());
  }
  if (!reached.ok()) {
    return Status::Unavailable("registry " + std::string(domain) +
                               " unreachable: " + reached.message() +
                               CertificateHint(reached.message(), host, options.certs_dir));
  }
  if (resp.status == 200) return credentials;
  if (resp.status != 401) {
    return Status::Corrupt("registry " + std::string(domain) + " answered GET /v2/ with HTTP " +
                           std::to_string(resp.status) + ": not a registry?");
  }
  std::optional<AuthChallenge> chosen;
  for (const std::string& h : resp.AllHeaders("www-authenticate")) {
    for (AuthChallenge& c : ParseWwwAuthenticate(h)) {
      if (!chosen || (c.scheme == "bearer" && chosen->scheme != "bearer")) chosen = std::move(c);
    }
  }
  if (!chosen || (chosen->scheme != "basic" && chosen->scheme != "bearer")) {
    return Status::Unauthorized("registry " + std::string(domain) +
                                " asks for authentication with no challenge imgfs understands "
                                "(Basic or Bearer)");
  }
  Credentials out = credentials;
  HttpRequest check = probe;
  if (chosen->scheme == "basic") {
    if (credentials.username.empty() && credentials.password.empty())
      return Refused(domain, credentials);
    check.headers.push_back("Authorization: Basic " +
                            EncodeBase64(credentials.username + ":" + credentials.password));
  } else {
    TokenRequest tr;
    tr.realm = chosen->params["realm"];
    tr.service = chosen->params["service"];
    tr.credentials = &credentials;
    tr.offline = true;
    auto [realm_scheme, realm_host] = UrlSchemeAndAuthority(tr.realm);
    if (realm_scheme != "https" && realm_scheme != "http") {
      return Status::Unauthorized("registry " + std::string(domain) +
                                  " sent a Bearer challenge without a usable realm ('" + tr.realm +
                                  "')");
    }
    HttpRequest req = BuildTokenRequest(tr);
    req.cancel = options.cancel;
    req.verify_tls = !IsInsecureRegistry(realm_host, options.insecure_registries);
    HttpResponse token_resp;
    Status st = transport.Perform(req, &token_resp);
    if (!st.ok()) {
      return Status::Unavailable("token server " + realm_host + " of registry " +
                                 std::string(domain) + " unreachable: " + st.message() +
                                 CertificateHint(st.message(), realm_host, options.certs_dir));
    }
    if (token_resp.status == 401 || token_resp.status == 403) return Refused(domain, credentials);
    if (token_resp.status != 200) {
      return Status::Unavailable("token server " + realm_host + " answered HTTP " +
                                 std::to_string(token_resp.status));
    }
    IMGFS_ASSIGN_OR_RETURN(TokenAnswer answer, ParseTokenAnswer(token_resp, realm_host));
    if (!answer.refresh_token.empty()) {
      // As docker: the registry's refresh token is stored instead of the password.
      out.password.clear();
      out.identity_token = answer.refresh_token;
    }
    check.headers.push_back("Authorization: Bearer " + answer.token);
  }
  Status st = transport.Perform(check, &resp);
  if (!st.ok()) {
    return Status::Unavailable("registry " + std::string(domain) + " unreachable: " + st.message());
  }
  if (resp.status == 401 || resp.status == 403) return Refused(domain, credentials);
  if (resp.status != 200) {
    return Status::Corrupt("registry " + std::string(domain) + " answered GET /v2/ with HTTP " +
                           std::to_string(resp.status));
  }
  return out;
}

}  // namespace imgfs::registry
