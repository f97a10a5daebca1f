// Storing and erasing credentials as docker login/logout do, podman's auth.json, where a
// registry is reached (endpoint.h) and the token requests of token.h.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "registry/credentials.h"
#include "registry/endpoint.h"
#include "registry/token.h"
#include "tests/support/files.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

class StoreTest : public ::testing::Test {
 protected:
  json Read() {
    std::ifstream in(dir_ + "/config.json");
    std::stringstream ss;
    ss << in.rdbuf();
    return json::parse(ss.str(), nullptr, false);
  }

  test::TempDir tmp_{"creds"};
  const std::string root_ = tmp_.path();
  const std::string dir_ = tmp_.Sub("docker");  // not there yet: StoreCredentials makes it
};

TEST_F(StoreTest, StoresAuthKeepsOtherKeysAndErasesEverySpelling) {
  Credentials c{"user", "p:w", "", ""};
  auto where = StoreCredentials(dir_, "docker.io", c);
  ASSERT_TRUE(where.ok()) << where.status().ToString();
  EXPECT_EQ(*where, dir_ + "/config.json");
  struct stat st;
  ASSERT_EQ(stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((dir_ + "/config.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Read()["auths"]["https://index.docker.io/v1/"]["auth"], EncodeBase64("user:p:w"));

  // Another spelling of Docker Hub is replaced, other registries and keys stay.
  json doc = Read();
  doc["auths"]["index.docker.io"] = {{"auth", EncodeBase64("old:old")}};
  doc["auths"]["ghcr.io"] = {{"auth", EncodeBase64("gh:tok")}};
  doc["detachKeys"] = "ctrl-x";
  std::ofstream(dir_ + "/config.json") << doc.dump();
  ASSERT_TRUE(StoreCredentials(dir_, "docker.io", Credentials{"new", "", "refresh", ""}).ok());
  doc = Read();
  EXPECT_FALSE(doc["auths"].contains("index.docker.io"));
  EXPECT_EQ(doc["auths"]["https://index.docker.io/v1/"]["identitytoken"], "refresh");
  EXPECT_EQ(doc["auths"]["https://index.docker.io/v1/"]["auth"], EncodeBase64("new:"));
  EXPECT_EQ(doc["detachKeys"], "ctrl-x");
  auto found = LookupCredentials(dir_, "docker.io");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->identity_token, "refresh");
  EXPECT_EQ((*found)->source, dir_ + "/config.json");

  auto erased = EraseCredentials(dir_, "registry-1.docker.io");
  ASSERT_TRUE(erased.ok());
  EXPECT_TRUE(*erased);
  doc = Read();
  EXPECT_EQ(doc["auths"].size(), 1u);
  EXPECT_TRUE(doc["auths"].contains("ghcr.io"));
  erased = EraseCredentials(dir_, "docker.io");
  ASSERT_TRUE(erased.ok());
  EXPECT_FALSE(*erased);
}

TEST_F(StoreTest, ABrokenConfigIsNotOverwritten) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/config.json") << "{ not json";
  auto where = StoreCredentials(dir_, "r.example.com", Credentials{"u", "p", "", ""});
  ASSERT_FALSE(where.ok());
  EXPECT_EQ(where.status().code(), Code::kInvalidArgument);
  std::ifstream in(dir_ + "/config.json");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "{ not json");
}

TEST_F(StoreTest, PodmanAuthFilesInPodmansOrderAfterDockers) {
  const char* saved_auth = std::getenv("REGISTRY_AUTH_FILE");
  const char* saved_runtime = std::getenv("XDG_RUNTIME_DIR");
  const char* saved_config = std::getenv("XDG_CONFIG_HOME");
  unsetenv("REGISTRY_AUTH_FILE");
  setenv("XDG_RUNTIME_DIR", (root_ + "/run").c_str(), 1);
  setenv("XDG_CONFIG_HOME", (root_ + "/cfg").c_str(), 1);
  std::vector<std::string> files = PodmanAuthFiles();
  std::filesystem::create_directories(root_ + "/run/containers");
  std::filesystem::create_directories(root_ + "/cfg/containers");
  std::ofstream(root_ + "/run/containers/auth.json")
      << R"({"auths":{"r.example.com":{"auth":")" << EncodeBase64("runtime:p") << R"("}}})";
  std::ofstream(root_ + "/cfg/containers/auth.json")
      << R"({"auths":{"r.example.com":{"auth":")" << EncodeBase64("config:p") << R"("}},
            "other.example.com":{}})";
  auto runtime = LookupCredentials(dir_, "r.example.com");
  std::filesystem::remove(root_ + "/run/containers/auth.json");
  auto config = LookupCredentials(dir_, "r.example.com");
  setenv("REGISTRY_AUTH_FILE", (root_ + "/cfg/containers/auth.json").c_str(), 1);
  std::vector<std::string> explicit_files = PodmanAuthFiles();
  ASSERT_TRUE(StoreCredentials(dir_, "r.example.com", Credentials{"docker", "p", "", ""}).ok());
  auto docker = LookupCredentials(dir_, "r.example.com");

  auto restore = [](const char* name, const char* value) {
    if (value != nullptr) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  };
  restore("REGISTRY_AUTH_FILE", saved_auth);
  restore("XDG_RUNTIME_DIR", saved_runtime);
  restore("XDG_CONFIG_HOME", saved_config);

  EXPECT_EQ(files, (std::vector<std::string>{root_ + "/run/containers/auth.json",
                                             root_ + "/cfg/containers/auth.json"}));
  EXPECT_EQ(explicit_files, std::vector<std::string>{root_ + "/cfg/containers/auth.json"});
  ASSERT_TRUE(runtime.ok() && runtime->has_value()) << runtime.status().ToString();
  EXPECT_EQ((*runtime)->username, "runtime");
  ASSERT_TRUE(config.ok() && config->has_value());
  EXPECT_EQ((*config)->username, "config");
  ASSERT_TRUE(docker.ok() && docker->has_value());
  EXPECT_EQ((*docker)->username, "docker");  // what imgfs login wrote comes first
}

TEST(RegistryFromArgumentTest, AsDockerLoginNamesThem) {
  for (const char* hub : {"", "docker.io", "index.docker.io", "registry-1.docker.io",
                          "https://index.docker.io/v1/", "https://registry-1.docker.io"}) {
    EXPECT_EQ(*RegistryFromArgument(hub), "docker.io") << hub;
  }
  EXPECT_EQ(*RegistryFromArgument("https://r.example.com:5000/v2/"), "r.example.com:5000");
  EXPECT_EQ(*RegistryFromArgument("10.0.0.2:5000"), "10.0.0.2:5000");
  EXPECT_FALSE(RegistryFromArgument("https:///x").ok());
}

TEST(EndpointTest, InsecureLoopbackAndSecureRegistries) {
  std::vector<std::string> insecure = {"r.example.com:5000", "http://plain.example.com",
                                       "10.20.0.0/16"};
  auto e = RegistryEndpoints("r.example.com:5000", insecure, "");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].base, "https://r.example.com:5000");
  EXPECT_FALSE(e[0].verify_tls);
  EXPECT_EQ(e[1].base, "http://r.example.com:5000");
  EXPECT_TRUE(IsInsecureRegistry("plain.example.com", insecure));
  EXPECT_TRUE(IsInsecureRegistry("10.20.3.4:5000", insecure));
  EXPECT_FALSE(IsInsecureRegistry("10.21.3.4:5000", insecure));
  EXPECT_FALSE(IsInsecureRegistry("r.example.com", insecure));  // another port: another registry

  e = RegistryEndpoints("r.example.com", insecure, "");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].base, "https://r.example.com");
  EXPECT_TRUE(e[0].verify_tls);

  e = RegistryEndpoints("127.0.0.1:5000", {}, "");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].base, "http://127.0.0.1:5000");
}

TEST(EndpointTest, CertificateHintNamesTheCertsDirectory) {
  std::string hint = CertificateHint(
      "SSL certificate problem: unable to get local issuer certificate", "10.1.2.3:5000",
      "/tmp/certs:/etc/docker/certs.d");
  EXPECT_NE(hint.find("/tmp/certs/10.1.2.3:5000/ca.crt"), std::string::npos) << hint;
  EXPECT_NE(hint.find("--insecure-registry 10.1.2.3:5000"), std::string::npos) << hint;
  EXPECT_EQ(CertificateHint("Connection refused", "h", ""), "");
}

TEST(TokenRequestTest, BasicGetAndRefreshGrant) {
  Credentials basic{"u", "p", "", ""};
  TokenRequest r;
  r.realm = "https://auth.example.com/token";
  r.service = "svc";
  r.scopes = {"repository:a/b:pull"};
  r.credentials = &basic;
  r.offline = true;
  HttpRequest get = BuildTokenRequest(r);
  EXPECT_EQ(get.method, "GET");
  EXPECT_EQ(get.url,
            "https://auth.example.com/token?service=svc&scope=repository%3Aa%2Fb%3Apull&account=u"
            "&offline_token=true&client_id=imgfs");
  EXPECT_EQ(get.headers, std::vector<std::string>{"Authorization: Basic " + EncodeBase64("u:p")});

  Credentials token{"u", "", "rt", ""};
  r.credentials = &token;
  r.offline = false;
  HttpRequest post = BuildTokenRequest(r);
  EXPECT_EQ(post.method, "POST");
  EXPECT_EQ(post.url, "https://auth.example.com/token");
  EXPECT_EQ(post.body,
            "grant_type=refresh_token&refresh_token=rt&client_id=imgfs&service=svc"
            "&scope=repository%3Aa%2Fb%3Apull");

  HttpResponse resp;
  resp.status = 200;
  resp.body = R"({"access_token":"A","refresh_token":"R","expires_in":5})";
  auto answer = ParseTokenAnswer(resp, "auth.example.com");
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->token, "A");
  EXPECT_EQ(answer->refresh_token, "R");
  EXPECT_EQ(answer->expires_in_s, 60);
  resp.body = "{}";
  EXPECT_EQ(ParseTokenAnswer(resp, "auth.example.com").status().code(), Code::kCorrupt);
}

}  // namespace
}  // namespace imgfs::registry
