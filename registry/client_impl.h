// Client::Impl, shared by the files that implement registry::Client (client.h); not for use
// outside registry/. Each file holds one job:
// - client_mirrors.cc: Send: the registry's mirrors in order, their health, the registry.
// - client.cc: the core. SendTo: the 401 challenge round, retries with backoff, the
//   blob transfer's failure budget and cancellation, redirects; HTTP answers mapped to Status.
// - client_auth.cc: credentials, challenges, Basic and Bearer (the token cache).
// - client_manifests.cc: manifests by tag or digest, HEAD, the paged tags list.
// - client_blobs.cc: blob streams and ranges, resumed where a broken stream stopped.
//
// Thread-safety: as Client's; the maps below are shared by all threads under mu_.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "registry/auth.h"
#include "registry/client.h"
#include "registry/endpoint.h"
#include "registry/http.h"
#include "registry/reference.h"

namespace imgfs::registry {

struct RegistryError {
  std::string code;
  std::string message;
};

// The first entry of the distribution spec's {"errors":[{"code":..,"message":..}]} body.
RegistryError ParseRegistryError(std::string_view body);

class Client::Impl {
 public:
  using Clock = std::chrono::steady_clock;

  Impl(ClientOptions options, std::unique_ptr<HttpTransport> transport)
      : options_(std::move(options)), transport_(std::move(transport)) {
    if (options_.max_attempts < 1) options_.max_attempts = 1;
    if (options_.max_transfer_failures < 1) options_.max_transfer_failures = 1;
  }

  // One logical request to the registry of `repo`.
  struct Call {
    const Reference* repo = nullptr;
    std::string method = "GET";
    std::string path;  // "/v2/..."
    std::vector<std::string> headers;
    std::function<bool(std::string_view)> sink;
    uint64_t max_body = 64 << 10;
    std::string what;  // what was asked for, for messages
    std::string base;  // "scheme://host[:port]" to send to; "" = the registry of `repo`
    // Failed attempts of the blob transfer this call belongs to (nullptr: not a blob
    // transfer); every failed attempt counts, and none is retried once it reaches
    // ClientOptions::max_transfer_failures.
    int* failures = nullptr;
    // The first blob byte asked for in a Range header; nullopt when there is none.
    std::optional<uint64_t> range_from;
    std::string body;   // POST / PUT
    bool push = false;  // authorize for scope repository:<repo>:pull,push
  };

  // client_manifests.cc
  Result<ManifestResponse> GetManifest(const Reference& repo, std::string_view tag_or_digest);
  Result<std::string> HeadManifest(const Reference& repo, std::string_view tag_or_digest);
  Result<std::vector<std::string>> ListTags(const Reference& repo);

  // client_push.cc
  Result<bool> HasBlob(const Reference& repo, std::string_view digest);
  Result<std::string> PushBlob(const Reference& repo, std::string_view bytes);
  Result<std::string> PutManifest(const Reference& repo, std::string_view tag_or_digest,
                                  std::string_view media_type, std::string_view bytes);
  Result<Referrers> ListReferrers(const Reference& repo, std::string_view digest,
                                  std::string_view artifact_type);

  // client_blobs.cc
  // Streams [off, off + len) of a blob (to its end when len is nullopt) through `sink`.
  Status StreamBlob(const Reference& repo, std::string_view digest, uint64_t off,
                    std::optional<uint64_t> len,
                    const std::function<Status(std::string_view)>& sink);

 private:
  static Result<bool> CheckTagOrDigest(std::string_view tag_or_digest);

  // The endpoints of `repo`'s registry (endpoint.h), the one that last answered first.
  std::vector<Endpoint> EndpointsOf(const Reference& repo) EXCLUDES(mu_);
  // Where requests to `repo`'s registry go now: "https://host[:port]" or "http://...".
  std::string BaseUrl(const Reference& repo) EXCLUDES(mu_) {
    return EndpointsOf(repo).front().base;
  }

  static std::string Scope(const Reference& repo, bool push) {
    return "repository:" + repo.repository + (push ? ":pull,push" : ":pull");
  }

  // client_mirrors.cc
  // Sends `call`, authenticating, following redirects and retrying. OK means some HTTP answer
  // came back from the final location; *resp holds it (a 401 from the registry is already
  // turned into a Status here). The registry's mirrors are tried first (ClientOptions::mirrors).
  Status Send(const Call& call, HttpResponse* resp);

  enum class MirrorOutcome { kServed, kNext };
  // One attempt at `mirror` (a URL); kServed when *st is the answer to return.
  MirrorOutcome TryMirror(const Call& call, const std::string& mirror, bool accept_whole,
                          HttpResponse* resp, Status* st);
  // The mirror health memory, under mu_: skipped mirrors by authority, blobs a mirror is still
  // filling by authority + path. Expired entries are dropped as new ones are added.
  enum class MirrorMemory { kSkipped, kFilling };
  bool Remembered(MirrorMemory memory, const std::string& key) EXCLUDES(mu_);
  void Remember(MirrorMemory memory, const std::string& key, std::chrono::milliseconds how_long)
      EXCLUDES(mu_);

  // client.cc
  // `call` to one registry (or mirror): authentication, redirects, retries.
  Status SendTo(const Call& call, HttpResponse* resp, int max_attempts, uint64_t* delivered);
  // One request and its redirects, with the registry's Authorization on registry URLs only.
  // Tries the registry's endpoints in turn while none answers (or goes to call.base).
  Status SendOnce(const Call& call, HttpResponse* resp, bool* sent_auth, bool* from_registry);
  Status SendVia(const Call& call, const Endpoint& endpoint, HttpResponse* resp, bool* sent_auth,
                 bool* from_registry);

  bool Cancelled() const { return options_.cancel != nullptr && options_.cancel->load(); }

  // Counts a failed attempt of `call`'s blob transfer; false when no attempt is left.
  bool CountFailure(const Call& call) const {
    if (call.failures == nullptr) return true;
    return ++*call.failures < options_.max_transfer_failures;
  }

  void Backoff(int attempt, int retry_after_s);
  Status MapStatus(const Call& call, const HttpResponse& resp, bool manifest);

  // client_auth.cc
  Result<std::optional<Credentials>> CredentialsFor(const Reference& repo) EXCLUDES(mu_);
  std::string AuthRequiredMessage(const Reference& repo) const;
  // "<registry> refused the credentials ... (user 'u', from <file>): ... imgfs login ...".
  std::string RefusedMessage(const Reference& repo) EXCLUDES(mu_);
  Status AuthFailed(const Reference& repo, bool sent_auth, const HttpResponse& resp) EXCLUDES(mu_);
  static std::string TokenKey(const AuthChallenge& c, const std::string& scope);
  // The Authorization value to send to `repo`'s registry, from what its last challenge asked;
  // a Bearer token for the push scope when `push`.
  Result<std::optional<std::string>> AuthorizationFor(const Reference& repo, bool push)
      EXCLUDES(mu_);
  // Learns the challenge of a 401 and, for Bearer, fetches a fresh token.
  Status Authenticate(const Reference& repo, const HttpResponse& resp, bool sent_auth, bool push)
      EXCLUDES(mu_);
  Result<std::string> FetchToken(const Reference& repo, const AuthChallenge& challenge,
                                 const std::string& scope) EXCLUDES(mu_);

  struct Token {
    std::string token;
    Clock::time_point expires;
  };

  // Constant after construction.
  ClientOptions options_;
  std::unique_ptr<HttpTransport> transport_;  // safe for concurrent use

  // State below is protected by mu_.
  Mutex mu_;
  std::map<std::string, AuthChallenge> challenges_ GUARDED_BY(mu_);          // by ApiHost
  std::map<std::string, Token> tokens_ GUARDED_BY(mu_);                      // by TokenKey
  std::map<std::string, std::optional<Credentials>> creds_ GUARDED_BY(mu_);  // by domain
  std::map<std::string, Clock::time_point> mirror_skipped_ GUARDED_BY(mu_);  // by authority
  std::map<std::string, Clock::time_point> mirror_filling_ GUARDED_BY(mu_);  // authority + path
  // The endpoint base that last answered, by ApiHost (EndpointsOf).
  std::map<std::string, std::string> answering_base_ GUARDED_BY(mu_);
};

}  // namespace imgfs::registry
