// `imgfs login`'s check of credentials against a registry, as docker login makes it: GET
// /v2/ without credentials; on a 401, the challenge decides:
// - Basic: GET /v2/ again with the user name and password;
// - Bearer: a token from the challenge's realm (token.h) with the credentials, asking for an
//   offline token (a refresh token the registry may give instead of storing the password),
//   then GET /v2/ with that token.
// A /v2/ that answers 200 without credentials needs none; the login then succeeds, as in
// docker. The endpoints and TLS settings are the client's (endpoint.h, http.h).
//
// Errors: kUnauthorized "... refused user 'u' ..." for wrong credentials; kUnavailable
// naming the registry and, for certificate problems, where to put the CA; kCorrupt for a
// registry that answers /v2/ with something else.
//
// Thread-safety: one call per transport at a time is not required; no state.
#pragma once

#include <string_view>

#include "base/status.h"
#include "registry/client.h"
#include "registry/credentials.h"
#include "registry/http.h"

namespace imgfs::registry {

// What to store after a successful check: `credentials` as given, or with the password
// replaced by the identity token the token server returned.
Result<Credentials> CheckLogin(HttpTransport& transport, const ClientOptions& options,
                               std::string_view domain, const Credentials& credentials);

}  // namespace imgfs::registry
