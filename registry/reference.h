// Reference: an image reference as docker understands it ("alpine", "ghcr.io/o/r:v1",
// "localhost:5000/app@sha256:...").
//
// Parse applies docker's normalization (distribution/reference ParseNormalizedNamed followed by
// TagNameOnly), so that imgfs names the same image docker would for the same string:
//   - the first path component is a registry domain only when it contains '.' or ':' or is
//     "localhost" (and is not upper case); otherwise the domain is docker.io;
//   - "index.docker.io" is docker.io; single-component docker.io names get "library/";
//   - "latest" is the tag when neither a tag nor a digest is given; "name:tag@digest" keeps
//     both, and the digest is what gets pulled (the tag is then informational, as in docker);
//   - repository paths must be lower case; tags match [\w][\w.-]{0,127}; only sha256 digests.
// Malformed input gives kInvalidArgument whose message starts with "invalid reference format"
// and says what is wrong (kUnsupported for a well-formed digest of another algorithm).
//
// Thread-safety: a value type.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::registry {

struct Reference {
  std::string domain;      // "docker.io", "localhost:5000", "127.0.0.1:41234", "ghcr.io"
  std::string repository;  // "library/alpine"
  std::string tag;         // "latest" when neither tag nor digest was given; "" for digest only
  std::string digest;      // "" or "sha256:<64 hex>"

  static Result<Reference> Parse(std::string_view s);

  // Fully qualified: "docker.io/library/alpine:latest", "host:5000/a/b@sha256:...",
  // "docker.io/library/x:tag@sha256:...".
  std::string String() const;
  // domain + "/" + repository, with neither tag nor digest.
  std::string Repo() const;
  // The host (and port) the distribution API is served from: "registry-1.docker.io" for
  // docker.io, the domain otherwise.
  std::string ApiHost() const;
  // True for localhost, 127.0.0.0/8 and [::1], with or without a port. Such registries are
  // spoken to over plain http, as docker does for loopback registries.
  bool IsInsecureLoopback() const;

  friend bool operator==(const Reference&, const Reference&) = default;
};

// True when `host` ("localhost", "127.0.0.1:5000", "[::1]:80", "::1") names the loopback
// interface. The port, if any, is ignored.
bool IsLoopbackHost(std::string_view host);

}  // namespace imgfs::registry
