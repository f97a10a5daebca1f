// HttpTransport: one HTTP exchange, the only place imgfs touches the network.
//
// The registry client (client.h) builds requests and decides about redirects, auth and retries;
// a transport only performs a single request and reports what came back. It never follows
// redirects, so the client can keep credentials away from other hosts. Tests substitute a fake
// transport to script registry behaviour.
//
// The curl transport (NewCurlTransport) reuses connections, TLS sessions and DNS answers across
// requests and threads (a CURLSH share plus a pool of easy handles), trusts the system CAs plus
// any *.crt in <certs dir>/<host:port>/ (docker's /etc/docker/certs.d layout, FindHostCerts),
// presents the client certificate found there, honours
// http(s)_proxy / HTTP(S)_PROXY / no_proxy except for loopback hosts (never proxied, as in Go),
// and uses a 15 s connect timeout and a stall timeout (CurlTransportOptions: a transfer slower
// than 1 KiB/s for 30 s, or that moves no byte for 30 s, fails), no overall timeout: a 10 GiB
// layer may take an hour.
//
// libcurl is loaded by the first Perform of the process, not at start (curl_library.h); a
// missing or too old libcurl.so.4 makes Perform return kUnavailable saying what to install.
//
// Exceptions never cross curl: a sink that throws ends its transfer with kInternal carrying
// the exception's text. Handles and header lists are owned by RAII types.
//
// Thread-safety: Perform may be called from many threads at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace imgfs::registry {

struct HttpRequest {
  std::string method = "GET";  // "GET", "HEAD", "POST" or "PUT" (with `body`)
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;                  // POST and PUT only
  // false: https without checking the server's certificate or name (an insecure registry).
  bool verify_tls = true;
  // When set and the response status is 2xx, body bytes go here instead of into
  // HttpResponse::body. The response's status and headers are already filled in when it is
  // called. Returning false stops the transfer; that is not an error.
  std::function<bool(std::string_view)> sink;
  // Bodies that are buffered stop (HttpResponse::truncated) beyond this many bytes.
  uint64_t max_body = 4 << 20;
  // When set and true (at any time, from any thread or a signal handler), the transfer stops
  // within about a second and Perform returns kUnavailable "transfer cancelled".
  const std::atomic<bool>* cancel = nullptr;
};

struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower case, in order
  std::string body;
  bool truncated = false;        // the buffered body hit max_body
  bool stopped_by_sink = false;  // the sink returned false

  // The first header named `name` (lower case), "" when absent.
  std::string Header(std::string_view name) const;
  std::vector<std::string> AllHeaders(std::string_view name) const;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Any HTTP status is OK here. Failures to get a response (DNS, refused, TLS, timeout, stall,
  // reset mid-body, cancel) are kUnavailable with the transport's own words; bytes a sink got
  // before a reset stay delivered.
  virtual Status Perform(const HttpRequest& request, HttpResponse* response) = 0;
};

struct CurlTransportOptions {
  std::string user_agent = "imgfs/0.1";
  // Directories of per-host CAs and client certificates, ':'-separated (FindHostCerts);
  // "" disables the lookup.
  std::string certs_dir = "/etc/docker/certs.d:/etc/containers/certs.d";
  // A transfer that moves fewer than stall_bytes_per_s bytes per second for stall_timeout_s
  // seconds in a row (curl's average), or no byte at all for stall_timeout_s seconds, fails
  // (kUnavailable "... stalled ..."): a registry that goes silent mid-body costs at most
  // about this long (progress is checked once a second) per attempt.
  int stall_timeout_s = 30;
  int stall_bytes_per_s = 1024;
};

// What a certs.d directory holds for one registry, as docker and podman read it: every *.crt
// is a CA trusted for that registry (besides the system's), and a *.cert with the *.key of
// the same name is the client certificate presented to it (client.cert / client.key).
struct HostCerts {
  std::string dir;  // "<certs dir>/<host:port>", "" when no certs directory has one
  std::vector<std::string> ca_files;
  std::string client_cert;
  std::string client_key;
};

// Looks in each of the ':'-separated `certs_dirs` for a directory named `host_port` (as the
// registry is written in the reference: "r.example.com:5000"); the first one found is used.
HostCerts FindHostCerts(std::string_view certs_dirs, std::string_view host_port);

std::unique_ptr<HttpTransport> NewCurlTransport(CurlTransportOptions options = {});

// Splits "scheme://host[:port]/path" into its scheme and authority ("host:port" as written).
// Empty strings when `url` is not absolute.
std::pair<std::string, std::string> UrlSchemeAndAuthority(std::string_view url);

// `location` (absolute, scheme-relative, or path) resolved against `base`.
std::string ResolveUrl(std::string_view base, std::string_view location);

}  // namespace imgfs::registry
