// imgfs against registries that require credentials: htpasswd (Basic) and token (Bearer)
// auth, with credentials taken from docker's $DOCKER_CONFIG/config.json.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>

#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr char kUser[] = "imgfs-user";
constexpr char kPassword[] = "correct horse";

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto images = TestWorld::Get().Images("busybox");
    ASSERT_TRUE(images.ok()) << images.status().ToString();
    images_ = *images;
  }

  // Pushes busybox with the right credentials, then checks the three cases a user meets.
  void CheckRegistry(RegistryServer& registry) {
    auto pushed = images_->Push(
        "busybox", registry.host(), "imgfs/private", "v1",
        PushOptions{ManifestFormat::kOci, std::string(kUser) + ":" + kPassword});
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    {
      SCOPED_TRACE("no credentials");
      TempDir cache("cache");
      ImgfsMount mount(cache.path());
      RunResult r = mount.Mount(pushed->ByTag());
      EXPECT_NE(r.exit_code, 0) << r.Describe();
      EXPECT_THAT(Lower(r.err), AnyOf(HasSubstr("auth"), HasSubstr("credential"))) << r.Describe();
      EXPECT_FALSE(mount.mounted());
    }
    {
      SCOPED_TRACE("wrong credentials");
      TempDir cache("cache"), config("docker");
      ASSERT_TRUE(WriteDockerConfig(config.path(), registry.host(), kUser, "wrong").ok());
      ImgfsMount mount(cache.path(), config.path());
      RunResult r = mount.Mount(pushed->ByTag());
      EXPECT_NE(r.exit_code, 0) << r.Describe();
      EXPECT_THAT(Lower(r.err), AnyOf(HasSubstr("auth"), HasSubstr("credential"))) << r.Describe();
      EXPECT_FALSE(mount.mounted());
    }
    {
      SCOPED_TRACE("right credentials");
      TempDir cache("cache"), config("docker");
      ASSERT_TRUE(WriteDockerConfig(config.path(), registry.host(), kUser, kPassword).ok());
      ImgfsMount mount(cache.path(), config.path());
      RunResult r = mount.Mount(pushed->ByTag());
      ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
      ASSERT_TRUE(mount.mounted());
      TreeDiff diff = CompareTrees(images_->ReferenceRoot("busybox"), mount.path());
      EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
    }
  }

  const TestImages* images_ = nullptr;
};

TEST_F(AuthTest, HtpasswdRegistryNeedsCredentialsFromDockerConfig) {
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kHtpasswd;
  options.user = kUser;
  options.password = kPassword;
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  CheckRegistry(**registry);
}

TEST_F(AuthTest, TokenRegistryNeedsCredentialsFromDockerConfig) {
  auto tokens = TokenServer::Start({{kUser, kPassword}});
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = tokens->get();
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  CheckRegistry(**registry);
}

}  // namespace
}  // namespace imgfs::test
