// The token service of the distribution spec's Bearer auth, as docker speaks to it: the
// request for a token and the reading of the answer. The client (client.h) and `imgfs
// login` (login.h) send these through their HttpTransport with their own retry policy.
//
// Which request:
// - credentials with an identity token (an OAuth2 refresh token): POST to the realm,
//   form-encoded grant_type=refresh_token, refresh_token, service, scope (space-separated),
//   client_id (docker's "OAuth2 token" flow);
// - else GET realm?service=..&scope=.. (one scope parameter each), with Basic credentials
//   when there are a user name and password, and `account=<user>`;
// - offline (login): offline_token=true&client_id=.. on the GET, access_type=offline on the
//   POST, asking for a refresh token to store instead of the password.
// The answer: `token` or `access_token`, `expires_in` (at least 60 s, the spec's minimum),
// `refresh_token` when the server gave one.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "registry/credentials.h"
#include "registry/http.h"

namespace imgfs::registry {

inline constexpr char kOAuthClientId[] = "imgfs";

struct TokenRequest {
  std::string realm;    // the challenge's realm, an http(s) URL
  std::string service;  // may be empty
  std::vector<std::string> scopes;
  const Credentials* credentials = nullptr;  // nullptr: anonymous
  bool offline = false;
};

// The HTTP request for a token. REQUIRES: realm is an http or https URL.
HttpRequest BuildTokenRequest(const TokenRequest& request);

// Whether BuildTokenRequest sends the refresh-token grant for these credentials.
bool UsesRefreshGrant(const Credentials* credentials);

struct TokenAnswer {
  std::string token;
  std::string refresh_token;  // "" when none was given
  int64_t expires_in_s = 60;
};

// The token of a 200 answer; kCorrupt naming `realm_host` when it carries none.
Result<TokenAnswer> ParseTokenAnswer(const HttpResponse& response, const std::string& realm_host);

// Percent-encoding of a query or form value (RFC 3986 unreserved characters kept).
std::string UrlEncode(std::string_view s);

}  // namespace imgfs::registry
