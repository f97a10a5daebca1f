// A real registry for integration tests: Debian's docker-registry (CNCF distribution 2.x) on
// 127.0.0.1, plus a Bearer token server for its token auth.
//
// Each RegistryServer owns a temp dir with its config.yml, storage (filesystem driver, delete
// enabled) and logs. It listens on a port picked once at creation, so Stop() then Start()
// brings the same registry back on the same address with the same content (tests stop it to
// prove that cached mounts work offline). distribution writes its access log (one Apache
// "combined" line per request) to stdout and its application log to stderr; both are kept in
// files so tests can count requests.
//
// TLS (a certificate from tests/support/test_ca.h) and a network namespace of the test's own
// (a non-loopback address) are options too.
//
// Auth modes: none; htpasswd (bcrypt, as distribution requires; made with `htpasswd -Bbn`);
// token (auth: token:, trusting the TokenServer's self-signed certificate).
//
// Failure: a missing binary gives "docker-registry not installed: run scripts/setup"; a
// registry that does not answer /v2/ in time gives its log tail. Not thread-safe; the
// destructor stops the server.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/netns.h"
#include "tests/support/process.h"

namespace imgfs::test {

// Issues RS256 JWTs for docker-registry's token auth (tests/support/token_server.py).
class TokenServer {
 public:
  struct User {
    std::string name;
    std::string password;
  };
  // Generates a key and self-signed certificate with openssl, starts the server and waits
  // until it listens.
  static Result<std::unique_ptr<TokenServer>> Start(const std::vector<User>& users);
  ~TokenServer();

  std::string realm() const;  // http://127.0.0.1:PORT/token
  const std::string& service() const { return service_; }
  const std::string& issuer() const { return issuer_; }
  const std::string& cert_path() const { return cert_path_; }
  std::string log_path() const { return dir_.Sub("token.log"); }
  int port() const { return port_; }

 private:
  TokenServer() : dir_("token") {}
  TempDir dir_;
  BackgroundProcess process_;
  std::string cert_path_;
  std::string service_ = "imgfs-test-registry";
  std::string issuer_ = "imgfs-test-token-issuer";
  int port_ = 0;
};

struct RegistryOptions {
  enum class Auth { kNone, kHtpasswd, kToken };
  Auth auth = Auth::kNone;
  // Credentials accepted by the htpasswd registry.
  std::string user = "imgfs";
  std::string password = "s3cret-pass";
  // For Auth::kToken. Must outlive the registry.
  const TokenServer* token_server = nullptr;
  // When set ("http://127.0.0.1:PORT"), the registry is a pull-through cache of that one
  // (distribution's proxy mode, `proxy: remoteurl:`): it fetches what it does not hold from
  // there, answering the first requests for a blob with the whole blob.
  std::string proxy_remote_url;
  // When both are set, the registry speaks only https with this certificate (tests/support/
  // test_ca.h); url() is then https://.
  std::string tls_cert;
  std::string tls_key;
  // With TLS: clients must present a certificate signed by this CA (distribution's clientcas).
  std::string tls_client_ca;
  // When set, the registry runs inside this namespace on its inner_address():5000 instead of
  // 127.0.0.1 (tests/support/netns.h). Must outlive the registry.
  const NetNamespace* netns = nullptr;
};

class RegistryServer {
 public:
  // Creates the config and starts the registry.
  static Result<std::unique_ptr<RegistryServer>> Create(const RegistryOptions& options = {});
  ~RegistryServer();

  // Starts again on the same port and storage. REQUIRES: stopped.
  Status Start();
  // Stops the process; afterwards nothing listens on the port.
  void Stop();
  bool running() { return process_.running(); }

  int port() const { return port_; }
  std::string host() const { return address_ + ":" + std::to_string(port_); }
  std::string url() const { return (options_.tls_cert.empty() ? "http://" : "https://") + host(); }
  const std::string& storage_dir() const { return storage_dir_; }

  std::string access_log_path() const { return dir_.Sub("access.log"); }
  std::string app_log_path() const { return dir_.Sub("registry.log"); }
  // Access-log lines that contain `needle` (e.g. "GET /v2/repo/blobs/").
  std::vector<std::string> AccessLogLines(const std::string& needle) const;

 private:
  explicit RegistryServer(const RegistryOptions& options) : options_(options), dir_("registry") {}
  Status WriteConfig();
  Status WaitReady();

  RegistryOptions options_;
  TempDir dir_;
  BackgroundProcess process_;
  std::string storage_dir_;
  std::string config_path_;
  std::string address_ = "127.0.0.1";
  int port_ = 0;
};

// The path of docker-registry, or an error naming scripts/setup.
Result<std::string> DockerRegistryBinary();

}  // namespace imgfs::test
