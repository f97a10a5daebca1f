// Registries as users meet them beyond loopback: docker-registry with TLS from a private CA
// and htpasswd auth, on an address of a network namespace of the test's own (so imgfs treats
// it as any remote registry); the CA in a certs.d directory named by --certs-dir or
// $IMGFS_CERTS_DIR, client certificates, --insecure-registry; identity tokens from a token
// server; blob redirects to another host.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/netns.h"
#include "tests/support/private_registry.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_ca.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "tls-user";
constexpr char kPassword[] = "tls-secret";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto images = TestWorld::Get().Images("busybox");
    ASSERT_TRUE(images.ok()) << images.status().ToString();
    images_ = *images;
  }

  // A TLS registry with htpasswd auth inside a fresh network namespace, holding busybox.
  void StartRegistry(bool require_client_cert = false) {
    auto ns = NetNamespace::Create();
    ASSERT_TRUE(ns.ok()) << ns.status().ToString();
    netns_ = std::move(*ns);
    auto ca = TestCa::Create();
    ASSERT_TRUE(ca.ok()) << ca.status().ToString();
    ca_ = std::move(*ca);
    auto server = ca_->IssueServer(netns_->inner_address());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    RegistryOptions options;
    options.tls_cert = server->cert_path;
    options.tls_key = server->key_path;
    options.netns = netns_.get();
    PushOptions push;
    if (require_client_cert) {
      options.tls_client_ca = ca_->cert_path();
      auto client = ca_->IssueClient("skopeo");
      ASSERT_TRUE(client.ok()) << client.status().ToString();
      std::string dir = push_certs_.MakeDir("certs");
      ASSERT_TRUE(RunOk({"cp", client->cert_path, dir + "/client.cert"}).ok());
      ASSERT_TRUE(RunOk({"cp", client->key_path, dir + "/client.key"}).ok());
      push.cert_dir = dir;
    }
    auto started = StartPrivateRegistry({kUser, kPassword}, "secure/app", options, push);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    registry_ = std::move(started->registry);
    image_ = started->image.ByTag();
  }

  // certs/<host:port>/ca.crt, docker's certs.d layout.
  std::string CertsDirWithCa() {
    std::string host_dir = certs_.MakeDir("with-ca/" + registry_->host());
    EXPECT_TRUE(RunOk({"cp", ca_->cert_path(), host_dir + "/ca.crt"}).ok());
    return certs_.Sub("with-ca");
  }

  RunResult Imgfs(const std::vector<std::string>& args, const std::string& password = "") {
    return RunImgfs(args, config_.path(), {}, password);
  }

  const TestImages* images_ = nullptr;
  std::unique_ptr<NetNamespace> netns_;
  std::unique_ptr<TestCa> ca_;
  std::unique_ptr<RegistryServer> registry_;
  std::string image_;
  TempDir config_{"docker"};
  TempDir certs_{"certs"};
  TempDir push_certs_{"push-certs"};
};

TEST_F(TlsTest, PrivateCaInCertsDirLoginMountLogout) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry());
  const std::string certs = CertsDirWithCa();
  const std::string empty_certs = certs_.MakeDir("empty");
  {
    SCOPED_TRACE("without the CA, login names the certificate problem and where the CA goes");
    RunResult r = Imgfs(
        {"login", "-u", kUser, "--password-stdin", "--certs-dir", empty_certs, registry_->host()},
        kPassword);
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("certificate")) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr(empty_certs + "/" + registry_->host() + "/ca.crt"))
        << r.Describe();
  }
  RunResult login = Imgfs(
      {"login", "-u", kUser, "--password-stdin", "--certs-dir", certs, registry_->host()},
      kPassword);
  ASSERT_TRUE(login.ok()) << login.Describe();
  EXPECT_THAT(login.out, HasSubstr("Login Succeeded"));
  {
    SCOPED_TRACE("the CA from --certs-dir");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(image_, {"--certs-dir", certs});
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    auto release = ReadFile(mount.Path("etc/os-release"));
    ASSERT_TRUE(release.ok()) << release.status().ToString();
    EXPECT_FALSE(release->empty());
  }
  {
    SCOPED_TRACE("the CA from $IMGFS_CERTS_DIR");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    mount.set_env({{"IMGFS_CERTS_DIR", certs}});
    RunResult r = mount.Mount(image_);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());
  }
  {
    SCOPED_TRACE("without the CA the mount names the certificate problem");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    mount.set_env({{"IMGFS_CERTS_DIR", empty_certs}});
    RunResult r = mount.Mount(image_);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("certificate")) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr(empty_certs + "/" + registry_->host() + "/ca.crt"))
        << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("--insecure-registry " + registry_->host())) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }
  {
    SCOPED_TRACE("marked insecure, it works without the CA");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(
        image_, {"--certs-dir", empty_certs, "--insecure-registry", registry_->host()});
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());
  }
  RunResult logout = Imgfs({"logout", registry_->host()});
  ASSERT_TRUE(logout.ok()) << logout.Describe();
  EXPECT_EQ(logout.out, "Removing login credentials for " + registry_->host() + "\n");
  {
    SCOPED_TRACE("after logout the mount names the missing credentials");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(image_, {"--certs-dir", certs});
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("no credentials for " + registry_->host())) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("imgfs login " + registry_->host())) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }
  {
    SCOPED_TRACE("wrong credentials are named as such");
    ASSERT_TRUE(WriteDockerConfig(config_.path(), registry_->host(), kUser, "wrong").ok());
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(image_, {"--certs-dir", certs});
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("refused the credentials")) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("user '" + std::string(kUser) + "'")) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("imgfs login " + registry_->host())) << r.Describe();
  }
}

TEST_F(TlsTest, ClientCertificateFromCertsDir) {
  ASSERT_NO_FATAL_FAILURE(StartRegistry(/*require_client_cert=*/true));
  ASSERT_TRUE(WriteDockerConfig(config_.path(), registry_->host(), kUser, kPassword).ok());
  const std::string certs = CertsDirWithCa();
  {
    SCOPED_TRACE("the registry refuses a client without a certificate");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(image_, {"--certs-dir", certs});
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }
  auto client = ca_->IssueClient("imgfs");
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ASSERT_TRUE(
      RunOk({"cp", client->cert_path, certs + "/" + registry_->host() + "/client.cert"}).ok());
  ASSERT_TRUE(
      RunOk({"cp", client->key_path, certs + "/" + registry_->host() + "/client.key"}).ok());
  TempDir cache("cache");
  ImgfsMount mount(cache.path(), config_.path());
  RunResult r = mount.Mount(image_, {"--certs-dir", certs});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());
}

TEST_F(TlsTest, InsecurePlainHttpRegistryBeyondLoopback) {
  auto ns = NetNamespace::Create();
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  RegistryOptions options;
  options.netns = ns->get();
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto pushed = images_->Push("busybox", (*registry)->host(), "plain/app", "v1");
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  {
    SCOPED_TRACE("not marked insecure: https only, which it does not speak");
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    RunResult r = mount.Mount(pushed->ByTag());
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("unreachable")) << r.Describe();
  }
  TempDir cache("cache");
  ImgfsMount mount(cache.path(), config_.path());
  RunResult r = mount.Mount(pushed->ByTag(), {"--insecure-registry", (*registry)->host()});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());
  EXPECT_FALSE((*registry)->AccessLogLines("GET /v2/plain/app/blobs/").empty());
  mount.Unmount();
  registry->reset();
}

}  // namespace
}  // namespace imgfs::test
