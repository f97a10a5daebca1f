// HTTP(S) proxies as docker users have them: Debian's tinyproxy on loopback as HTTPS_PROXY /
// HTTP_PROXY for registries on a non-loopback address (loopback is never proxied). Each
// registry runs inside a network namespace of the test's own (tests/support/netns.h), whose
// veth pair gives this namespace, and so tinyproxy, a route to it. tinyproxy logs every
// request it relays ("CONNECT 10.x.y.2:5000" for https, "GET http://10.x.y.2:5000/..." for
// plain http), which is what the tests count; with NO_PROXY covering the registry nothing of
// it reaches tinyproxy.
//
// One TLS registry (the CA in a certs.d directory) and one plain-HTTP registry (named with
// --insecure-registry) serve the whole binary, each holding busybox.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/netns.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_ca.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// tinyproxy on 127.0.0.1:PORT with a config of its own in a temp dir, allowing 127.0.0.1 and
// logging each request (LogLevel Info) to a file. `extra` is appended to the config.
class TinyProxy {
 public:
  static Result<std::unique_ptr<TinyProxy>> Start(const std::string& extra = "") {
    if (!IsExecutable("/usr/bin/tinyproxy") && !IsExecutable("/usr/sbin/tinyproxy")) {
      return Status::NotFound("tinyproxy not installed: run scripts/setup");
    }
    std::unique_ptr<TinyProxy> proxy(new TinyProxy());
    IMGFS_ASSIGN_OR_RETURN(proxy->port_, FreeTcpPort());
    std::string config = "Port " + std::to_string(proxy->port_) +
                         "\nListen 127.0.0.1\nTimeout 60\nMaxClients 50\nLogLevel Info\n"
                         "LogFile \"" +
                         proxy->log_path() + "\"\nAllow 127.0.0.1\n" + extra;
    IMGFS_RETURN_IF_ERROR(WriteFile(proxy->dir_.Sub("tinyproxy.conf"), config));
    IMGFS_RETURN_IF_ERROR(
        proxy->process_.Start({"tinyproxy", "-d", "-c", proxy->dir_.Sub("tinyproxy.conf")},
                              proxy->dir_.Sub("stdout"), proxy->dir_.Sub("stderr")));
    if (!WaitUntil([&] { return PortAcceptsConnections(proxy->port_); }, 10)) {
      auto err = ReadFile(proxy->dir_.Sub("stderr"));
      return Status::Unavailable("tinyproxy did not listen on 127.0.0.1:" +
                                 std::to_string(proxy->port_) + ": " + (err.ok() ? *err : ""));
    }
    return proxy;
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log_path() const { return dir_.Sub("tinyproxy.log"); }
  // Request lines of the log ("Request (file descriptor 5): CONNECT 10.200.3.2:5000 ...")
  // naming `host`.
  std::vector<std::string> RequestsFor(const std::string& host) const {
    std::vector<std::string> lines;
    auto log = ReadFile(log_path());
    if (!log.ok()) return lines;
    size_t pos = 0;
    while (pos < log->size()) {
      size_t end = log->find('\n', pos);
      if (end == std::string::npos) end = log->size();
      std::string line = log->substr(pos, end - pos);
      if (line.find("Request (") != std::string::npos && line.find(host) != std::string::npos) {
        lines.push_back(line);
      }
      pos = end + 1;
    }
    return lines;
  }

 private:
  TinyProxy() : dir_("tinyproxy") {}
  TempDir dir_;
  BackgroundProcess process_;
  int port_ = 0;
};

std::string Joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

// What the test suite shares: the registries, their namespaces and the CA.
struct ProxyWorld {
  const TestImages* images = nullptr;
  std::unique_ptr<NetNamespace> tls_ns;
  std::unique_ptr<NetNamespace> http_ns;
  std::unique_ptr<TestCa> ca;
  std::unique_ptr<RegistryServer> tls_registry;
  std::unique_ptr<RegistryServer> http_registry;
  std::unique_ptr<TempDir> certs;
  std::string tls_image;
  std::string http_image;
  std::string error;  // set when the set-up failed
};

ProxyWorld* world = nullptr;

Status SetUpWorld(ProxyWorld& w) {
  IMGFS_RETURN_IF_ERROR(CheckImgfsBinary());
  IMGFS_ASSIGN_OR_RETURN(w.images, TestWorld::Get().Images("busybox"));
  IMGFS_ASSIGN_OR_RETURN(w.tls_ns, NetNamespace::Create());
  IMGFS_ASSIGN_OR_RETURN(w.http_ns, NetNamespace::Create());
  IMGFS_ASSIGN_OR_RETURN(w.ca, TestCa::Create());
  IMGFS_ASSIGN_OR_RETURN(auto server, w.ca->IssueServer(w.tls_ns->inner_address()));
  RegistryOptions tls;
  tls.tls_cert = server.cert_path;
  tls.tls_key = server.key_path;
  tls.netns = w.tls_ns.get();
  IMGFS_ASSIGN_OR_RETURN(w.tls_registry, RegistryServer::Create(tls));
  RegistryOptions plain;
  plain.netns = w.http_ns.get();
  IMGFS_ASSIGN_OR_RETURN(w.http_registry, RegistryServer::Create(plain));
  w.certs = std::make_unique<TempDir>("certs");
  std::string host_dir = w.certs->MakeDir(w.tls_registry->host());
  IMGFS_RETURN_IF_ERROR(RunOk({"cp", w.ca->cert_path(), host_dir + "/ca.crt"}));
  IMGFS_ASSIGN_OR_RETURN(auto pushed,
                         w.images->Push("busybox", w.tls_registry->host(), "proxied/app", "v1"));
  w.tls_image = pushed.ByTag();
  IMGFS_ASSIGN_OR_RETURN(auto plain_pushed,
                         w.images->Push("busybox", w.http_registry->host(), "proxied/app", "v1"));
  w.http_image = plain_pushed.ByTag();
  return Status::Ok();
}

class ProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new ProxyWorld();
    Status s = SetUpWorld(*world);
    if (!s.ok()) world->error = s.ToString();
  }
  static void TearDownTestSuite() {
    // Registries stop before their namespaces go.
    world->tls_registry.reset();
    world->http_registry.reset();
    delete world;
    world = nullptr;
  }
  void SetUp() override { ASSERT_EQ(world->error, "") << "suite set-up failed"; }

  // Mounts `image` with `env` (and `args`), then compares the whole tree with busybox's
  // reference: the mount works through whatever route the environment chose.
  void MountAndCompare(const std::string& image, const std::vector<std::string>& args,
                       std::vector<std::pair<std::string, std::string>> env) {
    TempDir cache("cache");
    ImgfsMount mount(cache.path());
    mount.set_env(std::move(env));
    RunResult r = mount.Mount(image, args);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    TreeDiff diff = CompareTrees(world->images->ReferenceRoot("busybox"), mount.path());
    EXPECT_TRUE(diff.empty()) << diff.ToString();
    EXPECT_GT(diff.entries_compared, 10u);
  }

  std::vector<std::string> TlsArgs() const { return {"--certs-dir", world->certs->path()}; }
};

TEST_F(ProxyTest, HttpsRegistryThroughHttpsProxy) {
  auto proxy = TinyProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string host = world->tls_registry->host();
  ASSERT_NO_FATAL_FAILURE(
      MountAndCompare(world->tls_image, TlsArgs(),
                      {{"HTTPS_PROXY", (*proxy)->url()}, {"NO_PROXY", ""}, {"no_proxy", ""}}));
  std::vector<std::string> relayed = (*proxy)->RequestsFor(host);
  ASSERT_FALSE(relayed.empty()) << "tinyproxy relayed nothing for " << host;
  for (const std::string& line : relayed) EXPECT_THAT(line, HasSubstr("CONNECT " + host));
}

TEST_F(ProxyTest, LowerCaseHttpsProxyToo) {
  auto proxy = TinyProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  ASSERT_NO_FATAL_FAILURE(MountAndCompare(world->tls_image, TlsArgs(),
                                          {{"https_proxy", (*proxy)->url()}, {"NO_PROXY", ""}}));
  EXPECT_FALSE((*proxy)->RequestsFor(world->tls_registry->host()).empty());
}

TEST_F(ProxyTest, NoProxyCoveringTheRegistryGoesDirect) {
  auto proxy = TinyProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string address = world->tls_ns->inner_address();
  // The address itself, and (curl's reading, as Go's) a CIDR range covering it.
  for (const std::string& no_proxy : {address, std::string("example.com, 10.192.0.0/10")}) {
    SCOPED_TRACE("NO_PROXY=" + no_proxy);
    ASSERT_NO_FATAL_FAILURE(MountAndCompare(world->tls_image, TlsArgs(),
                                            {{"HTTPS_PROXY", (*proxy)->url()},
                                             {"HTTP_PROXY", (*proxy)->url()},
                                             {"NO_PROXY", no_proxy}}));
    EXPECT_EQ(Joined((*proxy)->RequestsFor(address)), "");
  }
}

TEST_F(ProxyTest, PlainHttpRegistryThroughHttpProxy) {
  auto proxy = TinyProxy::Start();
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  const std::string host = world->http_registry->host();
  ASSERT_NO_FATAL_FAILURE(
      MountAndCompare(world->http_image, {"--insecure-registry", host},
                      {{"HTTP_PROXY", (*proxy)->url()}, {"NO_PROXY", ""}, {"no_proxy", ""}}));
  std::vector<std::string> relayed = (*proxy)->RequestsFor(host);
  std::string all = Joined(relayed);
  EXPECT_THAT(all, HasSubstr("GET http://" + host + "/v2/proxied/app/manifests/v1"));
  EXPECT_THAT(all, HasSubstr("GET http://" + host + "/v2/proxied/app/blobs/sha256:"));
}

TEST_F(ProxyTest, ProxyThatRefusesIsNamed) {
  // tinyproxy lets CONNECT reach only the ports ConnectPort names: 443, not the registry's.
  auto proxy = TinyProxy::Start("ConnectPort 443\n");
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  TempDir cache("cache");
  ImgfsMount mount(cache.path());
  mount.set_env({{"HTTPS_PROXY", (*proxy)->url()}, {"NO_PROXY", ""}, {"no_proxy", ""}});
  RunResult r = mount.Mount(world->tls_image, TlsArgs());
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_FALSE(mount.mounted());
  EXPECT_THAT(r.err, HasSubstr("proxy " + (*proxy)->url())) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("NO_PROXY")) << r.Describe();
  EXPECT_FALSE((*proxy)->RequestsFor(world->tls_registry->host()).empty());
}

}  // namespace
}  // namespace imgfs::test
