// Registry authentication pieces that need no network: parsing WWW-Authenticate challenges
// and finding a registry's credentials the way docker does (config.json `auths`,
// `credHelpers`, `credsStore`).
//
// Credentials are looked up in <dir>/config.json where dir is the configured directory, else
// $DOCKER_CONFIG, else ~/.docker. A missing file means "no credentials"; a file that is not
// valid JSON is kInvalidArgument naming the file (docker refuses it too). A credential helper
// (docker-credential-<name> get) that is missing or fails means "no credentials" from it, and
// the `auths` entries are tried next.
//
// Thread-safety: pure functions (the helper runs as a child process per call).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/base64.h"
#include "base/status.h"

namespace imgfs::registry {

// One challenge of a WWW-Authenticate header: `Bearer realm="https://a/token",service="s"`.
struct AuthChallenge {
  std::string scheme;                         // lower case: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lower case, values unquoted
};

// All challenges in one header value. Quoted values may hold commas, '=' and \-escapes.
// Garbage gives fewer challenges, never a crash.
std::vector<AuthChallenge> ParseWwwAuthenticate(std::string_view header);

struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // an OAuth2 refresh token (docker login to some registries)
};

// "" -> $DOCKER_CONFIG, else $HOME/.docker.
std::string DockerConfigDir(std::string_view configured);

// The key docker stores the credentials of `domain` under: "https://index.docker.io/v1/" for
// docker.io, the domain itself otherwise.
std::string CredentialServerKey(std::string_view domain);

// Credentials for registry `domain` (a Reference::domain: "docker.io", "localhost:5000").
Result<std::optional<Credentials>> LookupCredentials(std::string_view config_dir,
                                                     std::string_view domain);

// Base64 as docker's config.json uses it (base/base64.h).
using ::imgfs::DecodeBase64;
using ::imgfs::EncodeBase64;

}  // namespace imgfs::registry
