// Registry authentication pieces that need no network: parsing WWW-Authenticate challenges.
// Where credentials come from (docker's config.json, credential helpers, podman's auth.json)
// is registry/credentials.h, included here for the client.
//
// Thread-safety: pure functions.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base64.h"
#include "base/status.h"
#include "registry/credentials.h"

namespace imgfs::registry {

// One challenge of a WWW-Authenticate header: `Bearer realm="https://a/token",service="s"`.
struct AuthChallenge {
  std::string scheme;                         // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lower case, values unquoted
};

// All challenges in one header value. Quoted values may hold commas, '=' and \-escapes.
// Garbage gives fewer challenges, never a crash.
std::vector<AuthChallenge> ParseWwwAuthenticate(std::string_view header);

// Base64 as docker's config.json uses it (base/base64.h).
using ::imgfs::DecodeBase64;
using ::imgfs::EncodeBase64;

}  // namespace imgfs::registry
