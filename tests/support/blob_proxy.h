// A forwarding HTTP proxy between imgfs and the test registry that counts what the registry
// sends and can corrupt it on demand (tests/support/blob_proxy.py, driven from here).
//
// The proxy listens on 127.0.0.1 (an image reference "127.0.0.1:PORT/repo:tag" is plain HTTP
// for imgfs) and forwards every request unchanged to the registry's port. Each finished request
// is logged with its method, path, Range header, status, the response body bytes actually sent
// and, for blob bodies, the blob digest and the blob offset of the first byte. That is the
// registry side of a transfer: what imgfs received, whatever imgfs itself reports.
//
// Faults: SetFlip() makes every later response body that carries byte OFFSET of blob DIGEST
// carry it with its lowest bit inverted; ClearFlips() returns to pass-through. SetFault()
// makes GET responses whose path contains a string stall, break off or run on without end
// (a registry that goes silent, truncates, or sends an over-long body); SetStatusFault()
// answers them with an HTTP error (503, 429 with Retry-After, or a 401 that refuses the
// client's token); either for the next N matching requests or for all; ClearFaults() ends
// that (one fault is active at a time). Paging:
// SetTagsPageSize(n) makes tags lists come in pages of at most n tags linked by Link headers,
// as Docker Hub serves them (the test registry sends one page). All take effect for requests
// that start after they return (a control file the proxy re-reads per request).
//
// Ownership: a BlobProxy owns its process and temp dir; the destructor stops the process, and
// the proxy also exits by itself when the test binary dies. Not thread-safe (one owner), but
// Requests() may be called while imgfs is using the proxy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"

namespace imgfs::test {

struct ProxiedRequest {
  std::string method;
  std::string path;
  std::string range;          // the request's Range header, "" when none
  int status = 0;             // 0: the registry never answered
  uint64_t bytes = 0;         // response body bytes sent to the client
  std::string digest;         // blob digest of a successful blob GET, else ""
  int64_t start = -1;         // blob offset of the body's first byte; -1 when not a blob body
  bool flipped = false;       // a bit of this body was inverted
  bool aborted = false;       // the client went away before the body was complete
  std::string fault;          // the fault applied ("stall", "cut", "endless", "status"), else ""
  std::string authorization;  // the request's Authorization header, "" when none
  // This line marks the start of a stall (an extra line; the request's own comes at its end).
  bool stalled = false;

  bool IsBlobBody() const { return !digest.empty() && start >= 0; }
  // One line for assertion messages: "GET /v2/.../blobs/sha256:ab.. Range=bytes=0-9 206 10".
  std::string ToString() const;
};

class BlobProxy {
 public:
  // Starts a proxy in front of 127.0.0.1:`upstream_port` and waits until it listens.
  static Result<std::unique_ptr<BlobProxy>> Start(int upstream_port);
  ~BlobProxy();
  BlobProxy(const BlobProxy&) = delete;
  BlobProxy& operator=(const BlobProxy&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

  Status SetFlip(const std::string& digest, uint64_t offset);
  Status ClearFlips();
  // 0: tags lists pass through unchanged.
  Status SetTagsPageSize(int n);
  // Blob GETs and HEADs are answered 307 to `origin` ("http://127.0.0.1:PORT") + their path,
  // as a registry sends them to a CDN; "" ends that.
  Status SetRedirectBlobs(const std::string& origin);

  enum class Fault {
    kStall,    // `after` body bytes, then silence until the client goes away
    kCut,      // `after` body bytes, then the connection is closed
    kEndless,  // the body without Content-Length, then zeros without end
  };
  // Applies `fault` to GET responses whose path contains `path_part` (e.g. a digest): to the
  // next `times` of them, or to all when `times` is 0.
  Status SetFault(const std::string& path_part, Fault fault, uint64_t after = 0, int times = 0);
  // Answers the next `times` GETs whose path contains `path_part` (all when 0) with HTTP
  // `status` and, when `retry_after_s` > 0, Retry-After. The registry is not asked, except for
  // 401: that is the registry's own answer to the request sent without its Authorization,
  // so it carries the registry's challenge, as when a token has expired.
  Status SetStatusFault(const std::string& path_part, int status, int times = 0,
                        int retry_after_s = 0);
  Status ClearFaults();

  // True once a response has begun a kStall silence, within `seconds`.
  bool WaitForStall(double seconds) const;

  // Every request finished so far, in the order they finished.
  Result<std::vector<ProxiedRequest>> Requests() const;
  // Requests() as text, one per line, for failure messages.
  std::string Describe() const;
  std::string log_path() const { return dir_.Sub("requests.jsonl"); }

 private:
  BlobProxy() : dir_("proxy") {}
  Status WriteControl();

  TempDir dir_;
  BackgroundProcess process_;
  int port_ = 0;
  std::string flips_ = "[]";   // the control file's "flips", as JSON
  std::string faults_ = "[]";  // the control file's "faults", as JSON
  int tags_page_size_ = 0;
  std::string redirect_blobs_;
  int fault_id_ = 0;  // tells the proxy a new fault from the last one (for `times`)
};

// Bytes of blob bodies per blob digest, over `requests`.
uint64_t BlobBytes(const std::vector<ProxiedRequest>& requests, const std::string& digest);

// A registry of the test's own (not TestWorld's) with a counting BlobProxy in front: for tests
// that push images of their own and count what imgfs fetches of them. Images are pushed to
// registry->host() and read through proxy->host().
struct ProxiedRegistry {
  std::unique_ptr<RegistryServer> registry;
  std::unique_ptr<BlobProxy> proxy;
};
Result<ProxiedRegistry> StartProxiedRegistry(const RegistryOptions& options = {});

}  // namespace imgfs::test
