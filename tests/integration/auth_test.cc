// imgfs against registries that require credentials: htpasswd (Basic) and token (Bearer)
// auth, with credentials taken from docker's $DOCKER_CONFIG/config.json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>

#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/private_registry.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

const Credentials kCreds{"imgfs-user", "correct horse"};

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Starts the registry with `options` holding busybox, then checks the three cases a user
  // meets.
  void CheckRegistry(const RegistryOptions& options) {
    auto started = StartPrivateRegistry(kCreds, "imgfs/private", options);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    const std::string host = started->registry->host();
    const std::string image = started->image.ByTag();
    {
      SCOPED_TRACE("no credentials");
      TempDir cache("cache");
      ImgfsMount mount(cache.path());
      RunResult r = mount.Mount(image);
      EXPECT_NE(r.exit_code, 0) << r.Describe();
      EXPECT_THAT(Lower(r.err), AnyOf(HasSubstr("auth"), HasSubstr("credential"))) << r.Describe();
      EXPECT_FALSE(mount.mounted());
    }
    {
      SCOPED_TRACE("wrong credentials");
      TempDir cache("cache"), config("docker");
      ASSERT_TRUE(WriteDockerConfig(config.path(), host, kCreds.user, "wrong").ok());
      ImgfsMount mount(cache.path(), config.path());
      RunResult r = mount.Mount(image);
      EXPECT_NE(r.exit_code, 0) << r.Describe();
      EXPECT_THAT(Lower(r.err), AnyOf(HasSubstr("auth"), HasSubstr("credential"))) << r.Describe();
      EXPECT_FALSE(mount.mounted());
    }
    {
      SCOPED_TRACE("right credentials");
      TempDir cache("cache"), config("docker");
      ASSERT_TRUE(WriteDockerConfig(config.path(), host, kCreds.user, kCreds.password).ok());
      ImgfsMount mount(cache.path(), config.path());
      RunResult r = mount.Mount(image);
      ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
      ASSERT_TRUE(mount.mounted());
      TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("busybox"), mount.path());
      EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
    }
  }
};

TEST_F(AuthTest, HtpasswdRegistryNeedsCredentialsFromDockerConfig) {
  CheckRegistry(RegistryOptions());
}

TEST_F(AuthTest, TokenRegistryNeedsCredentialsFromDockerConfig) {
  auto tokens = TokenServer::Start({{kCreds.user, kCreds.password}});
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = tokens->get();
  CheckRegistry(options);
}

}  // namespace
}  // namespace imgfs::test
