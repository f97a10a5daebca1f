// Registry credentials where docker and podman keep them: reading them for a pull, and
// storing and erasing them for `imgfs login` / `imgfs logout`.
//
// Reading (LookupCredentials), first match wins:
//  1. docker's <dir>/config.json, dir = the configured directory, else $DOCKER_CONFIG, else
//     ~/.docker: the `credHelpers` entry for the registry, else `credsStore`, run as
//     docker-credential-<name> get (cred_helper.h); a helper that has nothing, is missing or
//     fails means "nothing from it" and the file's `auths` entry is read next.
//  2. podman's auth.json files in podman's order: $REGISTRY_AUTH_FILE when set, else
//     $XDG_RUNTIME_DIR/containers/auth.json (/run/containers/<uid>/auth.json without
//     XDG_RUNTIME_DIR) and then $XDG_CONFIG_HOME/containers/auth.json (~/.config/...). They
//     have config.json's format and are read the same way.
// docker's file comes first because it is the one `imgfs login` writes.
// An `auths` entry is `auth` (base64 of user:password) or `username`/`password`, plus an
// optional `identitytoken` (an OAuth2 refresh token, used instead of the password). Keys may
// be a host[:port] or a URL ("https://host/v2/"); Docker Hub's names (docker.io,
// index.docker.io, registry-1.docker.io, https://index.docker.io/v1/) are one registry.
// A missing file means "no credentials"; a file that is not a JSON object, or an `auth` that
// is not base64 of user:password, is kInvalidArgument naming the file (docker refuses it too).
//
// Storing (StoreCredentials) is docker login's: through the registry's credHelpers entry or
// the credsStore when configured (the file then keeps an empty `auths` entry, as docker
// writes it), else as `auth` (and `identitytoken`) in config.json. The file is replaced
// atomically, mode 0600 (its directory is made 0700 when missing), and every other key of it
// is kept.
//
// Thread-safety: functions of the files and environment; no state of their own. Concurrent
// StoreCredentials calls on one file may lose one of the updates (docker's as well).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace imgfs::registry {

struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // an OAuth2 refresh token (docker login to some registries)
  // Where they were found, for messages: a file's path or "docker-credential-<name>".
  std::string source;
};

// "" -> $DOCKER_CONFIG, else $HOME/.docker.
std::string DockerConfigDir(std::string_view configured);

// The registry a `docker login` argument names, as a Reference::domain: "" and Docker Hub's
// names are "docker.io"; a URL gives its host[:port] ("https://r.example.com/v2/" ->
// "r.example.com"). kInvalidArgument when no host is left.
Result<std::string> RegistryFromArgument(std::string_view arg);

// The key docker stores the credentials of `domain` under: "https://index.docker.io/v1/" for
// docker.io, the domain itself otherwise.
std::string CredentialServerKey(std::string_view domain);

// podman's auth.json files that exist or would be read, in podman's order (see above).
std::vector<std::string> PodmanAuthFiles();

// Credentials for registry `domain` (a Reference::domain: "docker.io", "localhost:5000").
Result<std::optional<Credentials>> LookupCredentials(std::string_view config_dir,
                                                     std::string_view domain);

// Stores `c` for `domain` as docker login does. Returns where they went: the config.json
// path, or "docker-credential-<name>". Helper failures are kUnavailable in its words.
Result<std::string> StoreCredentials(std::string_view config_dir, std::string_view domain,
                                     const Credentials& c);

// Erases the credentials of `domain` from the registry's helper and from config.json's
// `auths` (every key naming that registry). False when there were none.
Result<bool> EraseCredentials(std::string_view config_dir, std::string_view domain);

}  // namespace imgfs::registry
