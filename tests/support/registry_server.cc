#include "tests/support/registry_server.h"

#include <chrono>
#include <sstream>
#include <thread>

namespace imgfs::test {
namespace {

constexpr const char* kRegistryBinary = "/usr/bin/docker-registry";
constexpr const char* kPython = "/usr/bin/python3";

std::string Tail(const std::string& path, size_t max_bytes = 3000) {
  auto data = ReadFile(path);
  if (!data.ok()) return "(no log: " + data.status().message() + ")";
  const std::string& s = *data;
  return s.size() > max_bytes ? "..." + s.substr(s.size() - max_bytes) : s;
}

// Polls `ready` every 50 ms until it holds, the process dies, or `seconds` pass.
template <typename Pred>
bool WaitFor(Pred ready, BackgroundProcess& process, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    if (!process.running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return ready();
}

}  // namespace

Result<std::string> DockerRegistryBinary() {
  if (!IsExecutable(kRegistryBinary)) {
    return Status::NotFound(std::string(kRegistryBinary) +
                            ": docker-registry not installed: run scripts/setup");
  }
  return std::string(kRegistryBinary);
}

// ---- TokenServer ----

Result<std::unique_ptr<TokenServer>> TokenServer::Start(const std::vector<User>& users) {
  if (!IsExecutable(kPython)) {
    return Status::NotFound("/usr/bin/python3 not installed: run scripts/setup");
  }
  std::unique_ptr<TokenServer> server(new TokenServer());
  const TempDir& dir = server->dir_;
  std::string key = dir.Sub("key.pem");
  server->cert_path_ = dir.Sub("cert.pem");
  RunResult gen = RunCommand({"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                              key, "-out", server->cert_path_, "-days", "2", "-subj",
                              "/CN=imgfs-test-token-issuer"});
  if (!gen.ok()) return Status::Internal("cannot generate token signing key: " + gen.Describe());
  std::string user_list;
  for (const auto& u : users) {
    if (!user_list.empty()) user_list += ',';
    user_list += u.name + ":" + u.password;
  }
  std::string port_file = dir.Sub("port");
  std::string script = std::string(IMGFS_SOURCE_DIR) + "/tests/support/token_server.py";
  IMGFS_RETURN_IF_ERROR(server->process_.Start(
      {kPython, script, "--key", key, "--cert", server->cert_path_, "--issuer", server->issuer_,
       "--service", server->service_, "--users", user_list, "--port-file", port_file},
      server->log_path(), server->log_path()));
  bool ready = WaitFor(
      [&] {
        auto p = ReadFile(port_file);
        if (!p.ok() || p->empty()) return false;
        server->port_ = std::stoi(*p);
        return PortAcceptsConnections(server->port_);
      },
      server->process_, 15);
  if (!ready) {
    return Status::Unavailable("token server did not start: " + Tail(server->log_path()));
  }
  return server;
}

TokenServer::~TokenServer() { process_.Stop(); }

std::string TokenServer::realm() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/token";
}

// ---- RegistryServer ----

Result<std::unique_ptr<RegistryServer>> RegistryServer::Create(const RegistryOptions& options) {
  IMGFS_RETURN_IF_ERROR(DockerRegistryBinary().status());
  if (options.auth == RegistryOptions::Auth::kToken && options.token_server == nullptr) {
    return Status::InvalidArgument("token auth needs a TokenServer");
  }
  std::unique_ptr<RegistryServer> server(new RegistryServer(options));
  if (options.netns != nullptr) {
    server->address_ = options.netns->inner_address();
    server->port_ = 5000;  // the namespace is the test's own: nothing else listens there
  } else {
    IMGFS_ASSIGN_OR_RETURN(server->port_, FreeTcpPort());
  }
  server->storage_dir_ = server->dir_.MakeDir("storage");
  server->config_path_ = server->dir_.Sub("config.yml");
  IMGFS_RETURN_IF_ERROR(server->WriteConfig());
  IMGFS_RETURN_IF_ERROR(server->Start());
  return server;
}

RegistryServer::~RegistryServer() { Stop(); }

Status RegistryServer::WriteConfig() {
  std::ostringstream c;
  c << "version: 0.1\n"
    << "log:\n  level: info\n  formatter: text\n"
    << "storage:\n"
    << "  filesystem:\n    rootdirectory: " << storage_dir_ << "\n"
    << "  delete:\n    enabled: true\n"
    << "  maintenance:\n    uploadpurging:\n      enabled: false\n"
    << "http:\n  addr: " << host() << "\n"
    << "  secret: imgfs-test-secret\n";
  if (!options_.tls_cert.empty()) {
    c << "  tls:\n    certificate: " << options_.tls_cert << "\n    key: " << options_.tls_key
      << "\n";
    if (!options_.tls_client_ca.empty()) {
      c << "    clientcas:\n      - " << options_.tls_client_ca << "\n";
    }
  }
  if (!options_.proxy_remote_url.empty()) {
    c << "proxy:\n  remoteurl: " << options_.proxy_remote_url << "\n";
  }
  switch (options_.auth) {
    case RegistryOptions::Auth::kNone:
      break;
    case RegistryOptions::Auth::kHtpasswd: {
      RunResult r = RunCommand({"htpasswd", "-Bbn", options_.user, options_.password});
      if (!r.ok()) {
        return Status::NotFound("htpasswd (apache2-utils) failed, run scripts/setup: " +
                                r.Describe());
      }
      std::string htpasswd_path = dir_.Sub("htpasswd");
      IMGFS_RETURN_IF_ERROR(WriteFile(htpasswd_path, r.out));
      c << "auth:\n  htpasswd:\n    realm: imgfs-test\n    path: " << htpasswd_path << "\n";
      break;
    }
    case RegistryOptions::Auth::kToken: {
      const TokenServer& t = *options_.token_server;
      c << "auth:\n  token:\n"
        << "    realm: " << t.realm() << "\n"
        << "    service: " << t.service() << "\n"
        << "    issuer: " << t.issuer() << "\n"
        << "    rootcertbundle: " << t.cert_path() << "\n";
      break;
    }
  }
  return WriteFile(config_path_, c.str());
}

Status RegistryServer::Start() {
  if (process_.running()) return Status::Internal("registry already running");
  IMGFS_ASSIGN_OR_RETURN(std::string binary, DockerRegistryBinary());
  std::vector<std::string> argv = {binary, "serve", config_path_};
  if (options_.netns != nullptr) argv = options_.netns->Exec(argv);
  IMGFS_RETURN_IF_ERROR(
      process_.Start(argv, access_log_path(), app_log_path(), {{"OTEL_SDK_DISABLED", "true"}}));
  return WaitReady();
}

Status RegistryServer::WaitReady() {
  // /v2/ answers 200 without auth and 401 with it; either means the server is up.
  bool ready = WaitFor(
      [&] {
        if (!PortAcceptsConnections(address_, port_)) return false;
        // A registry that asks for a client certificate refuses curl's handshake; it listens
        // only once it serves.
        if (!options_.tls_client_ca.empty()) return true;
        RunResult r = RunCommand({"curl", "-s", "-k", "--noproxy", "*", "-o", "/dev/null", "-w",
                                  "%{http_code}", "--max-time", "2", url() + "/v2/"});
        return r.ok() && (r.out == "200" || r.out == "401");
      },
      process_, 20);
  if (!ready) {
    process_.Stop();
    return Status::Unavailable("docker-registry did not come up on " + host() + ": " +
                               Tail(app_log_path()));
  }
  return Status::Ok();
}

void RegistryServer::Stop() {
  process_.Stop();
  // Wait until the port is closed so that a test that stopped the registry really is offline.
  for (int i = 0; i < 100 && PortAcceptsConnections(address_, port_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<std::string> RegistryServer::AccessLogLines(const std::string& needle) const {
  std::vector<std::string> lines;
  auto data = ReadFile(access_log_path());
  if (!data.ok()) return lines;
  std::istringstream in(*data);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(needle) != std::string::npos) lines.push_back(line);
  }
  return lines;
}

}  // namespace imgfs::test
