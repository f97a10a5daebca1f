// `imgfs login` / `imgfs logout` and where credentials come from, against docker-registry
// with htpasswd (Basic) and token (Bearer) auth: docker's config.json, a credential helper
// (credsStore and credHelpers), podman's auth.json, identity tokens.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/private_registry.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "login-user";
constexpr char kPassword[] = "pa55 word:with colon";

// docker-credential-test: the credential helper protocol over a JSON file ($CRED_STORE),
// logging each action with its server to $CRED_LOG.
constexpr char kHelper[] = R"(#!/usr/bin/python3
import json, os, sys
store, log = os.environ["CRED_STORE"], os.environ["CRED_LOG"]
data = json.load(open(store)) if os.path.exists(store) else {}
action, request = sys.argv[1], sys.stdin.read()
server = json.loads(request)["ServerURL"] if action == "store" else request.strip()
def save():
    with open(store, "w") as f:
        json.dump(data, f)
if action == "store":
    doc = json.loads(request)
    data[server] = {"Username": doc["Username"], "Secret": doc["Secret"]}
    save()
elif action == "get":
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(dict(ServerURL=server, **data[server])))
elif action == "erase":
    if server not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    del data[server]
    save()
with open(log, "a") as f:
    f.write(action + " " + server + "\n")
)";

class LoginTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto started = StartPrivateRegistry({kUser, kPassword}, "team/app");
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    registry_ = started->registry.release();
    image_ = new std::string(started->image.ByTag());
  }
  static void TearDownTestSuite() {
    delete registry_;
    registry_ = nullptr;
    delete image_;
    image_ = nullptr;
  }

  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_NE(registry_, nullptr);
  }

  // `imgfs login -u kUser --password-stdin HOST` with this test's DOCKER_CONFIG and env.
  RunResult Login(const std::string& password, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"login", "-u", kUser, "--password-stdin"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(registry_->host());
    return RunImgfs(args, config_.path(), extra_env_, password + "\n");
  }

  RunResult Imgfs(const std::vector<std::string>& args) {
    return RunImgfs(args, config_.path(), extra_env_);
  }

  // Mounts the image with this test's credentials and reads a file of it.
  void ExpectMountReads() {
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    mount.set_env(extra_env_);
    RunResult r = mount.Mount(*image_);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    auto release = ReadFile(mount.Path("etc/os-release"));
    ASSERT_TRUE(release.ok()) << release.status().ToString();
    EXPECT_FALSE(release->empty());
  }

  // A mount that fails for want of credentials, saying so and what to do.
  void ExpectMountNeedsLogin() {
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config_.path());
    mount.set_env(extra_env_);
    RunResult r = mount.Mount(*image_);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.err, HasSubstr("imgfs login " + registry_->host())) << r.Describe();
    EXPECT_THAT(Lower(r.err), HasSubstr("no credentials")) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }

  json ReadConfig() {
    auto text = ReadFile(config_.Sub("config.json"));
    if (!text.ok()) return json();
    return json::parse(*text, nullptr, false);
  }

  // Writes docker-credential-test into a directory put first on PATH.
  void InstallHelper() {
    std::string bin = helper_dir_.MakeDir("bin");
    ASSERT_TRUE(WriteFile(bin + "/docker-credential-test", kHelper, 0755).ok());
    const char* path = std::getenv("PATH");
    extra_env_.emplace_back("PATH", bin + ":" + (path != nullptr ? path : "/usr/bin:/bin"));
    extra_env_.emplace_back("CRED_STORE", helper_dir_.Sub("store.json"));
    extra_env_.emplace_back("CRED_LOG", helper_dir_.Sub("helper.log"));
  }
  json HelperStore() {
    auto text = ReadFile(helper_dir_.Sub("store.json"));
    return text.ok() ? json::parse(*text, nullptr, false) : json::object();
  }
  std::string HelperLog() {
    auto text = ReadFile(helper_dir_.Sub("helper.log"));
    return text.ok() ? *text : "";
  }

  static RegistryServer* registry_;
  static std::string* image_;
  TempDir config_{"docker"};
  TempDir helper_dir_{"helper"};
  std::vector<std::pair<std::string, std::string>> extra_env_;
};

RegistryServer* LoginTest::registry_ = nullptr;
std::string* LoginTest::image_ = nullptr;

TEST_F(LoginTest, LoginStoresBase64AuthMode0600KeepingOtherKeysAndLogoutRemovesIt) {
  ASSERT_TRUE(
      WriteFile(
          config_.Sub("config.json"),
          R"({"psFormat": "table {{.ID}}", "auths": {"other.example.com": {"auth": "dTpw"}}})",
          0644)
          .ok());
  ExpectMountNeedsLogin();

  RunResult wrong = Login("not the password");
  EXPECT_EQ(wrong.exit_code, 1) << wrong.Describe();
  EXPECT_THAT(wrong.err, HasSubstr("refused user '" + std::string(kUser) + "'"))
      << wrong.Describe();
  EXPECT_FALSE(ReadConfig()["auths"].contains(registry_->host()));

  RunResult r = Login(kPassword);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("Login Succeeded"));
  EXPECT_THAT(r.err, HasSubstr("stored unencrypted in " + config_.Sub("config.json")));
  json doc = ReadConfig();
  EXPECT_EQ(doc["psFormat"], "table {{.ID}}");
  EXPECT_EQ(doc["auths"]["other.example.com"]["auth"], "dTpw");
  // base64("login-user:pa55 word:with colon")
  EXPECT_EQ(doc["auths"][registry_->host()]["auth"],
            "bG9naW4tdXNlcjpwYTU1IHdvcmQ6d2l0aCBjb2xvbg==");
  struct stat st;
  ASSERT_EQ(stat(config_.Sub("config.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ExpectMountReads();

  RunResult out = Imgfs({"logout", registry_->host()});
  ASSERT_TRUE(out.ok()) << out.Describe();
  EXPECT_EQ(out.out, "Removing login credentials for " + registry_->host() + "\n");
  doc = ReadConfig();
  EXPECT_FALSE(doc["auths"].contains(registry_->host()));
  EXPECT_EQ(doc["auths"]["other.example.com"]["auth"], "dTpw");
  EXPECT_EQ(doc["psFormat"], "table {{.ID}}");
  ExpectMountNeedsLogin();

  RunResult again = Imgfs({"logout", registry_->host()});
  ASSERT_TRUE(again.ok()) << again.Describe();
  EXPECT_EQ(again.out, "Not logged in to " + registry_->host() + "\n");
}

TEST_F(LoginTest, DockerHubNamesAreOneEntry) {
  // No network: only logout, which touches nothing but the file.
  ASSERT_TRUE(WriteFile(config_.Sub("config.json"),
                        R"({"auths": {"index.docker.io": {"auth": "dTpw"},
                                      "https://index.docker.io/v1/": {"auth": "dTpw"},
                                      "registry-1.docker.io": {"auth": "dTpw"},
                                      "ghcr.io": {"auth": "dTpw"}}})")
                  .ok());
  RunResult r = Imgfs({"logout", "registry-1.docker.io"});
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.out, "Removing login credentials for https://index.docker.io/v1/\n");
  json doc = ReadConfig();
  EXPECT_EQ(doc["auths"].size(), 1u) << doc.dump();
  EXPECT_TRUE(doc["auths"].contains("ghcr.io"));
  RunResult none = Imgfs({"logout"});
  EXPECT_EQ(none.out, "Not logged in to https://index.docker.io/v1/\n") << none.Describe();
}

TEST_F(LoginTest, CredsStoreHelperReceivesStoreAndSuppliesThePassword) {
  InstallHelper();
  ASSERT_TRUE(WriteFile(config_.Sub("config.json"), R"({"credsStore": "test"})").ok());
  RunResult r = Login(kPassword);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr("Login Succeeded"));
  EXPECT_THAT(r.err, Not(HasSubstr("unencrypted")));
  EXPECT_THAT(HelperLog(), HasSubstr("store " + registry_->host()));
  json store = HelperStore();
  EXPECT_EQ(store[registry_->host()]["Username"], kUser);
  EXPECT_EQ(store[registry_->host()]["Secret"], kPassword);
  // As docker: the file names the registry but holds no secret.
  json doc = ReadConfig();
  EXPECT_EQ(doc["auths"][registry_->host()], json::object()) << doc.dump();
  EXPECT_EQ(doc["credsStore"], "test");

  ExpectMountReads();
  EXPECT_THAT(HelperLog(), HasSubstr("get " + registry_->host()));

  RunResult out = Imgfs({"logout", registry_->host()});
  ASSERT_TRUE(out.ok()) << out.Describe();
  EXPECT_THAT(HelperLog(), HasSubstr("erase " + registry_->host()));
  EXPECT_FALSE(HelperStore().contains(registry_->host()));
  ExpectMountNeedsLogin();
}

TEST_F(LoginTest, CredHelpersEntryWinsOverTheFile) {
  InstallHelper();
  // The registry's own helper; a stale password in `auths` must not be what is used.
  ASSERT_TRUE(WriteFile(config_.Sub("config.json"),
                        R"({"credHelpers": {")" + registry_->host() + R"(": "test"}})")
                  .ok());
  RunResult r = Login(kPassword);
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_THAT(HelperLog(), HasSubstr("store " + registry_->host()));
  EXPECT_EQ(HelperStore()[registry_->host()]["Secret"], kPassword);
  ASSERT_TRUE(WriteFile(config_.Sub("config.json"), R"({"credHelpers": {")" + registry_->host() +
                                                        R"(": "test"},
                            "auths": {")" + registry_->host() +
                                                        R"(": {"auth": "dTpw"}}})")
                  .ok());
  ExpectMountReads();
  EXPECT_THAT(HelperLog(), HasSubstr("get " + registry_->host()));
}

TEST_F(LoginTest, PodmanAuthJsonAloneWorks) {
  std::string auth = "{\"auths\": {\"" + registry_->host() +
                     "\": {\"auth\": \"bG9naW4tdXNlcjpwYTU1IHdvcmQ6d2l0aCBjb2xvbg==\"}}}";
  {
    SCOPED_TRACE("$REGISTRY_AUTH_FILE");
    TempDir podman("podman");
    ASSERT_TRUE(WriteFile(podman.Sub("auth.json"), auth, 0600).ok());
    extra_env_ = {{"REGISTRY_AUTH_FILE", podman.Sub("auth.json")}};
    ExpectMountReads();
  }
  {
    SCOPED_TRACE("$XDG_RUNTIME_DIR/containers/auth.json");
    TempDir runtime("runtime");
    ASSERT_TRUE(WriteFile(runtime.MakeDir("containers") + "/auth.json", auth, 0600).ok());
    extra_env_ = {{"XDG_RUNTIME_DIR", runtime.path()}};
    ExpectMountReads();
  }
  extra_env_.clear();
  ExpectMountNeedsLogin();
}

// docker login against a token-auth registry stores the refresh token the token server gives
// (offline_token=true) as `identitytoken`, and pulls then use the OAuth2 refresh-token grant.
TEST(IdentityTokenTest, LoginStoresTheRefreshTokenAndMountsTradeItForAccess) {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto tokens = TokenServer::Start({{kUser, kPassword}});
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = tokens->get();
  auto started = StartPrivateRegistry({kUser, kPassword}, "team/tokened", options);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  const RegistryServer& registry = *started->registry;
  const PushedImage& pushed = started->image;

  TempDir config("docker");
  RunResult login = RunImgfs({"login", "-u", kUser, "--password-stdin", registry.host()},
                             config.path(), {}, std::string(kPassword) + "\n");
  ASSERT_TRUE(login.ok()) << login.Describe();
  EXPECT_THAT(login.out, HasSubstr("Login Succeeded"));
  auto text = ReadFile(config.Sub("config.json"));
  ASSERT_TRUE(text.ok());
  json entry = json::parse(*text, nullptr, false)["auths"][registry.host()];
  ASSERT_TRUE(entry.contains("identitytoken")) << *text;
  EXPECT_EQ(entry["auth"], "bG9naW4tdXNlcjo=") << *text;  // "login-user:": no password kept
  EXPECT_THAT(*text, Not(HasSubstr("pa55")));

  auto token_log = [&] {
    auto log = ReadFile((*tokens)->log_path());
    return log.ok() ? *log : std::string();
  };
  const size_t logged_before = token_log().size();
  {
    TempDir cache("cache");
    ImgfsMount mount(cache.path(), config.path());
    RunResult r = mount.Mount(pushed.ByTag());
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());
  }
  std::string mount_requests = token_log().substr(logged_before);
  EXPECT_THAT(mount_requests, HasSubstr("\"POST /token HTTP/1.1\" 200")) << mount_requests;
  EXPECT_THAT(mount_requests, Not(HasSubstr("GET /token"))) << mount_requests;

  // A refresh token the server no longer knows: the mount says to log in again.
  ASSERT_TRUE(WriteFile(config.Sub("config.json"), R"({"auths": {")" + registry.host() +
                                                       R"(": {"identitytoken": "revoked"}}})")
                  .ok());
  TempDir cache("cache");
  ImgfsMount mount(cache.path(), config.path());
  RunResult r = mount.Mount(pushed.ByTag());
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("refused the credentials")) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("an identity token")) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("imgfs login " + registry.host())) << r.Describe();
}

// A registry that sends blob downloads to another host:port (a CDN): the registry's
// credentials never go there.
TEST(BlobRedirectTest, NoAuthorizationReachesTheRedirectTarget) {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto started = StartPrivateRegistry({kUser, kPassword}, "team/cdn");
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  auto cdn_store = RegistryServer::Create();  // what the "CDN" serves blobs from
  ASSERT_TRUE(cdn_store.ok()) << cdn_store.status().ToString();
  auto images = TestWorld::Get().Images("busybox");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE((*images)->Push("busybox", (*cdn_store)->host(), "team/cdn", "v1").ok());

  auto front = BlobProxy::Start(started->registry->port());
  ASSERT_TRUE(front.ok()) << front.status().ToString();
  auto cdn = BlobProxy::Start((*cdn_store)->port());
  ASSERT_TRUE(cdn.ok()) << cdn.status().ToString();
  ASSERT_TRUE((*front)->SetRedirectBlobs("http://" + (*cdn)->host()).ok());

  TempDir config("docker"), cache("cache");
  ASSERT_TRUE(WriteDockerConfig(config.path(), (*front)->host(), kUser, kPassword).ok());
  ImgfsMount mount(cache.path(), config.path());
  RunResult r = mount.Mount((*front)->host() + "/team/cdn:v1");
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  EXPECT_TRUE(ReadFile(mount.Path("etc/os-release")).ok());

  auto front_requests = (*front)->Requests();
  auto cdn_requests = (*cdn)->Requests();
  ASSERT_TRUE(front_requests.ok() && cdn_requests.ok());
  int redirected = 0, authorized = 0;
  for (const ProxiedRequest& q : *front_requests) {
    if (q.status == 307) ++redirected;
    if (q.authorization.rfind("Basic ", 0) == 0) ++authorized;
  }
  EXPECT_GT(redirected, 0) << (*front)->Describe();
  EXPECT_GT(authorized, 0) << (*front)->Describe();  // the registry itself got them
  int blob_gets = 0;
  for (const ProxiedRequest& q : *cdn_requests) {
    if (q.path.find("/blobs/") != std::string::npos) ++blob_gets;
    EXPECT_EQ(q.authorization, "") << q.ToString();
  }
  EXPECT_GT(blob_gets, 0) << (*cdn)->Describe();
}

}  // namespace
}  // namespace imgfs::test
