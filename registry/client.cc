// registry::Client, its core: SendTo (the challenge round, retries with backoff within
// the transfer's failure budget, cancellation, redirects) and HTTP answers mapped to Status.
#include "registry/client.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "base/log.h"
#include "registry/client_impl.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

constexpr int kMaxRedirects = 5;

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

}  // namespace

RegistryError ParseRegistryError(std::string_view body) {
  RegistryError e;
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return e;
  auto errors = doc.find("errors");
  if (errors == doc.end() || !errors->is_array() || errors->empty()) return e;
  const json& first = (*errors)[0];
  if (!first.is_object()) return e;
  if (auto c = first.find("code"); c != first.end() && c->is_string())
    e.code = c->get<std::string>();
  if (auto m = first.find("message"); m != first.end() && m->is_string()) {
    e.message = m->get<std::string>();
  }
  return e;
}

Status Client::Impl::SendTo(const Call& call, HttpResponse* resp, int max_attempts,
                            uint64_t* delivered) {
  const Reference& repo = *call.repo;
  Call counted = call;
  if (call.sink) {
    counted.sink = [&](std::string_view chunk) {
      *delivered += chunk.size();
      return call.sink(chunk);
    };
  }
  bool challenged = false;
  for (int attempt = 1;; ++attempt) {
    bool sent_auth = false;
    bool from_registry = true;
    if (Cancelled()) return Status::Unavailable("transfer of " + call.what + " cancelled");
    Status st = SendOnce(counted, resp, &sent_auth, &from_registry);
    if (!st.ok()) {
      bool budget_left = CountFailure(call);
      // A certificate the registry will present again is not worth retrying.
      bool tls_refused = st.message().find("certificate") != std::string::npos;
      if (st.code() != Code::kUnavailable || *delivered > 0 || tls_refused ||
          attempt >= max_attempts || !budget_left || Cancelled()) {
        return st;
      }
      Backoff(attempt, 0);
      continue;
    }
    if (resp->status == 401 && from_registry) {
      if (challenged) return AuthFailed(repo, sent_auth, *resp);
      challenged = true;
      IMGFS_RETURN_IF_ERROR(Authenticate(repo, *resp, sent_auth, call.push));
      --attempt;  // the challenge round is not a failure
      continue;
    }
    if ((resp->status == 429 || resp->status >= 500) && attempt < max_attempts &&
        CountFailure(call) && !Cancelled()) {
      int retry_after = std::atoi(resp->Header("retry-after").c_str());
      IMGFS_LOG(kInfo, "HTTP " << resp->status << " for " << call.what << ", retrying");
      Backoff(attempt, retry_after);
      continue;
    }
    return Status::Ok();
  }
}

std::vector<Endpoint> Client::Impl::EndpointsOf(const Reference& repo) {
  std::vector<Endpoint> all = RegistryEndpoints(repo.ApiHost(), options_.insecure_registries,
                                                options_.certs_dir);
  MutexLock lock(&mu_);
  auto it = answering_base_.find(repo.ApiHost());
  if (it != answering_base_.end()) {
    std::stable_partition(all.begin(), all.end(),
                          [&](const Endpoint& e) { return e.base == it->second; });
  }
  return all;
}

Status Client::Impl::SendOnce(const Call& call, HttpResponse* resp, bool* sent_auth,
                              bool* from_registry) {
  if (!call.base.empty()) {
    auto [scheme, authority] = UrlSchemeAndAuthority(call.base);
    return SendVia(
        call, Endpoint{call.base, !IsInsecureRegistry(authority, options_.insecure_registries)},
        resp, sent_auth, from_registry);
  }
  // An insecure registry is tried over https, then plain http (docker's order); the one
  // that answers is asked first from then on.
  std::vector<Endpoint> endpoints = EndpointsOf(*call.repo);
  Status first;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    Status st = SendVia(call, endpoints[i], resp, sent_auth, from_registry);
    if (st.ok() || Cancelled() || st.code() != Code::kUnavailable) {
      if (st.ok() && i > 0) {
        MutexLock lock(&mu_);
        answering_base_[call.repo->ApiHost()] = endpoints[i].base;
      }
      return st;
    }
    if (i == 0) first = st;
    if (i + 1 < endpoints.size()) {
      IMGFS_LOG(kInfo, endpoints[i].base << " did not answer (" << st.message() << "); trying "
                                         << endpoints[i + 1].base);
    }
  }
  return first;
}

Status Client::Impl::SendVia(const Call& call, const Endpoint& endpoint, HttpResponse* resp,
                             bool* sent_auth, bool* from_registry) {
  const Reference& repo = *call.repo;
  const auto registry_origin = UrlSchemeAndAuthority(endpoint.base);
  std::string url = endpoint.base + call.path;
  for (int hop = 0; hop <= kMaxRedirects; ++hop) {
    HttpRequest req;
    req.method = call.method;
    req.url = url;
    req.headers = call.headers;
    req.body = call.body;
    req.sink = call.sink;
    req.max_body = call.max_body;
    req.cancel = options_.cancel;
    const auto [scheme, authority] = UrlSchemeAndAuthority(url);
    *from_registry = std::make_pair(scheme, authority) == registry_origin;
    req.verify_tls = *from_registry ? endpoint.verify_tls
                                    : !IsInsecureRegistry(authority, options_.insecure_registries);
    *sent_auth = false;
    if (*from_registry) {
      IMGFS_ASSIGN_OR_RETURN(std::optional<std::string> auth, AuthorizationFor(repo, call.push));
      if (auth) {
        req.headers.push_back("Authorization: " + *auth);
        *sent_auth = true;
      }
    }
    Status st = transport_->Perform(req, resp);
    if (!st.ok()) {
      IMGFS_LOG(kDebug, req.method << " " << url << ": " << st.message());
      std::string host = *from_registry ? repo.domain : authority;
      return Status::Unavailable("registry " + host + " unreachable: " + st.message() +
                                 CertificateHint(st.message(), authority, options_.certs_dir));
    }
    IMGFS_LOG(kDebug, req.method << " " << url << ": HTTP " << resp->status);
    if (!IsRedirect(resp->status)) return Status::Ok();
    std::string location = resp->Header("location");
    if (location.empty()) {
      return Status::Corrupt("registry " + repo.domain + " redirected " + call.what +
                             " without a Location");
    }
    url = ResolveUrl(url, location);
    if (UrlSchemeAndAuthority(url).first.empty()) {
      return Status::Corrupt("registry " + repo.domain + " redirected " + call.what +
                             " to an invalid location '" + location + "'");
    }
  }
  return Status::Corrupt("more than " + std::to_string(kMaxRedirects) + " redirects for " +
                         call.what);
}

int64_t RetryDelayMs(int attempt, int base_ms, int retry_after_s, double jitter) {
  int64_t ms = static_cast<int64_t>(base_ms) << std::clamp(attempt - 1, 0, 10);
  ms = std::min<int64_t>(ms, 8000);
  ms = ms / 2 +
       static_cast<int64_t>(static_cast<double>(ms - ms / 2) * std::clamp(jitter, 0.0, 1.0));
  if (retry_after_s > 0) ms = std::max<int64_t>(ms, std::min(retry_after_s, 30) * 1000LL);
  return ms;
}

void Client::Impl::Backoff(int attempt, int retry_after_s) {
  thread_local std::mt19937 random{std::random_device{}()};
  const int64_t ms = RetryDelayMs(attempt, options_.retry_base_delay_ms, retry_after_s,
                                  std::uniform_real_distribution<double>(0.0, 1.0)(random));
  // In slices, so that a cancel does not wait for the whole delay.
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (!Cancelled() && Clock::now() < until) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    std::this_thread::sleep_for(std::min(left, std::chrono::milliseconds(50)));
  }
}

Status Client::Impl::MapStatus(const Call& call, const HttpResponse& resp, bool manifest) {
  const Reference& repo = *call.repo;
  RegistryError e = ParseRegistryError(resp.body);
  std::string detail = e.message.empty() ? std::string() : ": " + e.message;
  std::string http = " (HTTP " + std::to_string(resp.status) + ")";
  switch (resp.status) {
    case 404:
      if (e.code == "NAME_UNKNOWN") {
        return Status::NotFound("repository not found: " + repo.Repo() +
                                " (check the name, or whether you need to log in)");
      }
      if (manifest) {
        // Most registries answer MANIFEST_UNKNOWN for an unknown repository as well.
        return Status::NotFound("manifest unknown: " + call.what +
                                " (no such tag or digest in that repository, or no such "
                                "repository)");
      }
      return Status::NotFound("blob unknown: " + call.what);
    case 401:
    case 403:
      return Status::Unauthorized("access to " + call.what + " denied" + http + detail);
    case 416:
      return Status::Corrupt("range not satisfiable for " + call.what +
                             ": the blob is smaller than expected");
    case 429:
      return Status::Unavailable("registry " + repo.domain + " is rate-limiting requests for " +
                                 call.what + http + detail);
    case 400:
      return Status::InvalidArgument("registry " + repo.domain + " rejected the request for " +
                                     call.what + http + detail);
    case 405:
    case 501:
      return Status::Unsupported("registry " + repo.domain + " does not support the request for " +
                                 call.what + http + detail);
    default:
      if (resp.status >= 500) {
        return Status::Unavailable("registry " + repo.domain + " failed to serve " + call.what +
                                   http + " after " + std::to_string(options_.max_attempts) +
                                   " attempts" + detail);
      }
      return Status::Corrupt("registry " + repo.domain + " answered " + call.what + http + detail);
  }
}

CurlTransportOptions TransportOptionsFor(const ClientOptions& options) {
  CurlTransportOptions out;
  out.user_agent = options.user_agent;
  out.certs_dir = options.certs_dir;
  out.stall_timeout_s = std::max(1, options.stall_timeout_s);
  return out;
}

Client::Client(const ClientOptions& options)
    : Client(options, NewCurlTransport(TransportOptionsFor(options))) {}

Client::Client(ClientOptions options, std::unique_ptr<HttpTransport> transport)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(transport))) {}

Client::~Client() = default;

}  // namespace imgfs::registry
