// docker's credential helper protocol: `docker-credential-<name> get|store|erase`, a request
// on stdin and an answer on stdout (github.com/docker/docker-credential-helpers).
//
//   get    stdin: the server key ("https://index.docker.io/v1/")
//          stdout: {"ServerURL":..,"Username":..,"Secret":..}; Username "<token>" means the
//          Secret is an identity token (an OAuth2 refresh token)
//   store  stdin: {"ServerURL":..,"Username":..,"Secret":..}
//   erase  stdin: the server key
// A helper that fails prints its reason on stdout and exits non-zero; "credentials not found"
// is how `get` says it has nothing.
//
// The helper is looked up on $PATH. Its stdin is a socket, so a helper that exits without
// reading gives EPIPE, never SIGPIPE; its stdout is read up to 1 MiB; its stderr is dropped.
//
// Thread-safety: each call runs its own child process.
#pragma once

#include <optional>
#include <string>

#include "base/status.h"
#include "registry/credentials.h"

namespace imgfs::registry {

// What `get` returned; nullopt when the helper has nothing for `server` (or could not be
// run, or printed something that is not its JSON: logged).
std::optional<Credentials> HelperGet(const std::string& helper, const std::string& server);

// `store`: kUnavailable naming the helper and what it printed when it fails or is missing.
Status HelperStore(const std::string& helper, const std::string& server, const Credentials& c);

// `erase`: as HelperStore. A helper that has nothing to erase fails in its own words.
Status HelperErase(const std::string& helper, const std::string& server);

}  // namespace imgfs::registry
