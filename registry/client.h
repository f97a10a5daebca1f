// Client: the distribution-spec (OCI / Docker registry v2) client of imgfs.
//
// What it does for every request, the way docker does:
// - https://<Reference::ApiHost()>/v2/..., plain http for loopback registries, unchecked
//   https then plain http for insecure ones (endpoint.h: the endpoint that answered is
//   remembered per host);
// - authentication driven by the registry's 401 challenge: anonymous first, then Basic with
//   the credentials docker or podman stored (credentials.h), or a Bearer token fetched from
//   the challenge's realm for scope repository:<repo>:pull (token.h: Basic credentials sent
//   to the realm when there are some, an identity token with the refresh-token grant). Tokens are
//   cached per (realm, service, scope) until they expire and fetched again once on a 401. The last
//   challenge of a host is remembered so later requests authenticate up front;
// - redirects (blob GETs are usually 307 to a CDN) followed here, at most 5, and the
//   Authorization header is only ever sent to the registry's own scheme://host:port;
// - requests go to the registry's configured mirrors first (ClientOptions::mirrors), with a
//   short memory of the mirrors that failed;
// - 429, 5xx and failures to get a response retried with exponential backoff and jitter
//   (RetryDelayMs) up to max_attempts (honouring a short Retry-After); a blob stream that breaks
//   after some bytes
//   resumes with a Range request from where it stopped;
// - bounded blob transfers: an attempt that stalls (ClientOptions::stall_timeout_s below
//   1 KiB/s) fails, and a transfer (GetBlob, GetBlobRange, GetBlobVerified) gives up after
//   max_transfer_failures failed attempts in all, retries and resumes together. A registry
//   that goes silent thus fails a transfer within
//   max_transfer_failures * (stall_timeout_s + 8 s backoff) (about 3 minutes by default);
// - cancellation: once *ClientOptions::cancel is true, transfers stop within about a second
//   and nothing is retried (kUnavailable "... cancelled").
// Errors carry the reference and say what to do: kUnauthorized, kNotFound ("manifest unknown:
// <ref>", "repository not found: <repo>", "blob unknown: ..."), kUnavailable ("registry <host>
// unreachable: <cause>"), kDigestMismatch, kCorrupt (a server that breaks the protocol).
//
// Thread-safety: all methods may be called from many threads at once; connections, TLS
// sessions and tokens are shared.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "registry/http.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace imgfs::registry {

struct ClientOptions {
  std::string docker_config_dir;  // "" = $DOCKER_CONFIG, else ~/.docker
  std::string user_agent = "imgfs/0.1";
  int max_attempts = 3;
  int retry_base_delay_ms = 250;  // doubled on each retry, at most 8 s
  int stall_timeout_s = 30;       // see above; also applies to manifests and tokens
  int max_transfer_failures = 5;  // failed attempts per blob transfer, resumes included
  // Not owned; may be set to true from any thread or a signal handler.
  const std::atomic<bool>* cancel = nullptr;
  // Per-registry CAs and client certificates, docker's and podman's certs.d layout; several
  // directories separated by ':', the first with a directory for the registry wins (http.h).
  std::string certs_dir = "/etc/docker/certs.d:/etc/containers/certs.d";
  // Registries spoken to without a checked certificate, or over plain http (endpoint.h):
  // host[:port] or IPv4 CIDR entries, from --insecure-registry and the config files.
  std::vector<std::string> insecure_registries;
  // Mirrors per registry (Reference::domain: "docker.io", "10.0.0.5:5000"), as URLs
  // ("https://mirror.example.com", "http://127.0.0.1:5001"; cli/config.h). Every request for
  // that registry tries them in order, then the registry itself; a mirror is asked once, and
  // any failure that delivered no bytes moves on to the next source. Credentials are those of
  // the mirror's host. A mirror that failed (unreachable, 5xx, 429, a broken body) is skipped
  // for mirror_skip_s, with one warning saying that the registry serves instead. A mirror
  // that answers a Range request with the whole blob (a pull-through cache that does not
  // hold the blob yet) serves that request only when the range starts in the blob's first
  // kMaxMirrorSkip bytes (the rest is cut off); otherwise, and for the blob's other ranges
  // during mirror_fill_ms, the registry is asked first and the mirror after it.
  std::map<std::string, std::vector<std::string>> mirrors;
  int mirror_skip_s = 30;
  int mirror_fill_ms = 2000;
};

// The curl transport's settings that follow from `options` (certs, stall timeout, agent).
CurlTransportOptions TransportOptionsFor(const ClientOptions& options);

inline constexpr size_t kMaxTags = 100000;
// Bytes of a whole blob a mirror sent for a Range request that are skipped to reach the range.
inline constexpr uint64_t kMaxMirrorSkip = 1 << 20;
inline constexpr int kMaxTagPages = 10000;

// What ListReferrers found: the referrers' descriptors (artifactType filled in), and where
// from. `from_api` tells a registry that indexes referrers by their subject itself (OCI 1.1)
// from one whose referrers live in the tag schema's index (`sha256-<hex>`), which pushers
// must then update.
struct Referrers {
  bool from_api = false;
  std::vector<Descriptor> manifests;
};

struct ManifestResponse {
  std::string bytes;
  std::string media_type;  // Content-Type without parameters
  std::string digest;      // sha256 of bytes, always computed here
};

class Client {
 public:
  explicit Client(const ClientOptions& options = {});
  // Uses `transport` instead of the network (tests).
  Client(ClientOptions options, std::unique_ptr<HttpTransport> transport);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // GET /v2/<repo>/manifests/<tag_or_digest>, accepting OCI and Docker indexes and manifests
  // (and schema 1, to recognise and refuse it later). By digest: the bytes must hash to it
  // (kDigestMismatch, nothing returned). By tag: a Docker-Content-Digest header, when sent,
  // must equal the computed digest. At most kMaxManifestBytes.
  Result<ManifestResponse> GetManifest(const Reference& repo, std::string_view tag_or_digest);

  // HEAD of the manifest; its Docker-Content-Digest (a GET is made when the server does not
  // send one). Cheap revalidation of a cached tag: Docker Hub does not rate-limit HEADs.
  Result<std::string> HeadManifest(const Reference& repo, std::string_view tag_or_digest);

  // Appends exactly `len` bytes at `off` of the blob to *out (Range: bytes=off-(off+len-1)).
  // A server that ignores Range and answers 200 is handled by skipping `off` bytes and
  // stopping after `len`. A 206 whose Content-Range is not the one asked for is kCorrupt; a
  // blob that ends early is kCorrupt. *out is unchanged on failure. Not verified here.
  Status GetBlobRange(const Reference& repo, std::string_view digest, uint64_t off, uint64_t len,
                      std::string* out);

  // Streams the whole blob through `sink`, in order, each byte once (also across resumed
  // connections). A non-OK Status from `sink` stops the stream and is returned. Not verified.
  Status GetBlob(const Reference& repo, std::string_view digest,
                 const std::function<Status(std::string_view)>& sink);

  // Every tag of the repository (GET /v2/<repo>/tags/list), in the registry's order, following
  // the pages a registry announces with `Link: <...>; rel="next"` (distribution spec), as
  // docker's `pull --all-tags` does. No page size is asked for: the registry chooses. An
  // unknown repository is kNotFound "repository not found: ..."; more than kMaxTags tags or
  // kMaxTagPages pages, a page that is not the spec's JSON, or a next link to another host is
  // kCorrupt.
  Result<std::vector<std::string>> ListTags(const Reference& repo);

  // A small blob (a config) read whole and checked against `digest`; larger than `max_size`
  // is kCorrupt.
  Result<std::string> GetBlobVerified(const Reference& repo, std::string_view digest,
                                      uint64_t max_size = 64 << 20);

  // Pushing (client_push.cc). Each asks for a token of scope repository:<repo>:pull,push (or
  // sends Basic credentials) and goes to the registry itself, never to a mirror. A registry
  // that refuses the push is kUnauthorized naming the repository.

  // Whether the repository holds the blob (HEAD /v2/<repo>/blobs/<digest>).
  Result<bool> HasBlob(const Reference& repo, std::string_view digest);
  // Uploads `bytes` monolithically (POST /v2/<repo>/blobs/uploads/, then PUT to the Location
  // it answers, relative or absolute, with ?digest=); skipped when HasBlob. Returns the
  // digest; a registry that names another one in Docker-Content-Digest is kDigestMismatch.
  Result<std::string> PushBlob(const Reference& repo, std::string_view bytes);
  // PUT /v2/<repo>/manifests/<tag_or_digest> with `media_type` as Content-Type. Returns the
  // manifest's digest (the sha256 of `bytes`).
  Result<std::string> PutManifest(const Reference& repo, std::string_view tag_or_digest,
                                  std::string_view media_type, std::string_view bytes);
  // The manifests referring to `digest` whose artifactType is `artifact_type` ("" = all):
  // GET /v2/<repo>/referrers/<digest> when it answers 200, else the referrers tag schema
  // (the index tagged sha256-<hex>); nothing found is an empty list.
  Result<Referrers> ListReferrers(const Reference& repo, std::string_view digest,
                                  std::string_view artifact_type = "");

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// The delay before retry `attempt` (1-based): base_ms doubled per attempt up to 8 s, of which
// a random part (`jitter`, uniform in [0, 1)) picks a point in the upper half ("equal jitter"),
// so that clients that failed together do not retry together; then at least `retry_after_s`
// (a registry's Retry-After), capped at 30 s.
int64_t RetryDelayMs(int attempt, int base_ms, int retry_after_s, double jitter);

}  // namespace imgfs::registry
