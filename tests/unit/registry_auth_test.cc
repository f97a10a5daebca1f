#include "registry/auth.h"
#include "tests/support/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace imgfs::registry {
namespace {

namespace fs = std::filesystem;

TEST(WwwAuthenticateTest, ParsesBearerChallenge) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(c[0].params.at("service"), "registry.docker.io");
  EXPECT_EQ(c[0].params.at("scope"), "repository:library/alpine:pull");
}

TEST(WwwAuthenticateTest, QuotedValuesKeepCommasAndEscapes) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://r.example/token?a=1,b=2", scope="repository:a/b:pull,push", error="insufficient_scope", note="say \"hi\"")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].params.at("realm"), "https://r.example/token?a=1,b=2");
  EXPECT_EQ(c[0].params.at("scope"), "repository:a/b:pull,push");
  EXPECT_EQ(c[0].params.at("error"), "insufficient_scope");
  EXPECT_EQ(c[0].params.at("note"), "say \"hi\"");
}

TEST(WwwAuthenticateTest, SeveralChallengesAndCaseInsensitiveNames) {
  auto c = ParseWwwAuthenticate(
      R"(Basic realm="Registry Realm", BEARER Realm=https://t/x ,Service=svc)");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params.at("realm"), "Registry Realm");
  EXPECT_EQ(c[1].scheme, "bearer");
  EXPECT_EQ(c[1].params.at("realm"), "https://t/x");
  EXPECT_EQ(c[1].params.at("service"), "svc");

  auto bare = ParseWwwAuthenticate("Basic");
  ASSERT_EQ(bare.size(), 1u);
  EXPECT_EQ(bare[0].scheme, "basic");
  EXPECT_TRUE(bare[0].params.empty());
}

TEST(WwwAuthenticateTest, GarbageNeverCrashes) {
  for (const char* h :
       {"", ",,,", "\"", "=", "Bearer realm=\"unterminated", "Bearer =x",
        "Bearer realm=", "\x01\x02", "Bearer realm=\"a\" junk \"b\"", "Basic dXNlcjpwYXNz=="}) {
    SCOPED_TRACE(h);
    auto c = ParseWwwAuthenticate(h);
    for (const AuthChallenge& ch : c) EXPECT_FALSE(ch.scheme.empty());
  }
  auto c = ParseWwwAuthenticate("Bearer realm=\"unterminated");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].params.at("realm"), "unterminated");
}

TEST(Base64Test, RoundTrips) {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("user:pa:ss"), std::string("\0\xff\x10", 3)}) {
    std::optional<std::string> back = DecodeBase64(EncodeBase64(s));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(EncodeBase64("user:pass"), "dXNlcjpwYXNz");
  EXPECT_FALSE(DecodeBase64("not base64!").has_value());
}

class CredentialsTest : public ::testing::Test {
 protected:
  void WriteConfig(const std::string& json) { std::ofstream(dir_ + "/config.json") << json; }

  test::TempDir tmp_{"auth"};
  const std::string dir_ = tmp_.path();
};

TEST_F(CredentialsTest, MissingConfigMeansNoCredentials) {
  auto c = LookupCredentials(dir_, "docker.io");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->has_value());
}

TEST_F(CredentialsTest, InvalidConfigIsAnErrorNamingTheFile) {
  WriteConfig("{ not json");
  auto c = LookupCredentials(dir_, "docker.io");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find(dir_ + "/config.json"), std::string::npos);

  WriteConfig(R"({"auths":{"localhost:5000":{"auth":"%%%"}}})");
  c = LookupCredentials(dir_, "localhost:5000");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("auth"), std::string::npos);
}

TEST_F(CredentialsTest, FindsAuthsEntriesTheWayDockerWritesThem) {
  WriteConfig(R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": ")" +
              EncodeBase64("hubuser:hub:pass") + R"("},
      "localhost:5000": {"auth": ")" +
              EncodeBase64("local:secret") + R"("},
      "https://ghcr.io": {"username": "gh", "password": "tok"},
      "http://127.0.0.1:41234/v2/": {"auth": ")" +
              EncodeBase64("ip:pw") + R"("},
      "empty.example.com": {}
    }
  })");
  auto hub = LookupCredentials(dir_, "docker.io");
  ASSERT_TRUE(hub.ok()) << hub.status().ToString();
  ASSERT_TRUE(hub->has_value());
  EXPECT_EQ((*hub)->username, "hubuser");
  EXPECT_EQ((*hub)->password, "hub:pass");

  auto local = LookupCredentials(dir_, "localhost:5000");
  ASSERT_TRUE(local.ok() && local->has_value());
  EXPECT_EQ((*local)->username, "local");
  EXPECT_EQ((*local)->password, "secret");

  auto gh = LookupCredentials(dir_, "ghcr.io");
  ASSERT_TRUE(gh.ok() && gh->has_value());
  EXPECT_EQ((*gh)->username, "gh");
  EXPECT_EQ((*gh)->password, "tok");

  auto ip = LookupCredentials(dir_, "127.0.0.1:41234");
  ASSERT_TRUE(ip.ok() && ip->has_value());
  EXPECT_EQ((*ip)->username, "ip");

  for (const char* none : {"empty.example.com", "localhost:5001", "localhost", "quay.io"}) {
    auto c = LookupCredentials(dir_, none);
    ASSERT_TRUE(c.ok());
    EXPECT_FALSE(c->has_value()) << none;
  }
}

TEST_F(CredentialsTest, DockerHubAliasesAreOneRegistry) {
  WriteConfig(R"({"auths": {"index.docker.io": {"username": "u", "password": "p"}}})");
  auto hub = LookupCredentials(dir_, "docker.io");
  ASSERT_TRUE(hub.ok() && hub->has_value());
  EXPECT_EQ((*hub)->username, "u");
}

TEST_F(CredentialsTest, DockerConfigEnvironmentIsTheDefaultDirectory) {
  WriteConfig(R"({"auths": {"r.example.com": {"username": "env", "password": "p"}}})");
  const char* old = std::getenv("DOCKER_CONFIG");
  std::string saved = old ? old : "";
  setenv("DOCKER_CONFIG", dir_.c_str(), 1);
  EXPECT_EQ(DockerConfigDir(""), dir_);
  auto c = LookupCredentials("", "r.example.com");
  if (old) {
    setenv("DOCKER_CONFIG", saved.c_str(), 1);
  } else {
    unsetenv("DOCKER_CONFIG");
  }
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ((*c)->username, "env");
  EXPECT_EQ(DockerConfigDir("/explicit"), "/explicit");
}

TEST_F(CredentialsTest, UsesCredentialHelpersThenFallsBackToAuths) {
  // A helper that knows one server, as docker-credential-* helpers do.
  std::string helper = dir_ + "/docker-credential-imgfstest";
  std::ofstream(helper)
      << "#!/bin/sh\n"
         "read server\n"
         "if [ \"$1\" = get ] && [ \"$server\" = \"helped.example.com\" ]; then\n"
         "  echo '{\"ServerURL\":\"helped.example.com\",\"Username\":\"hu\",\"Secret\":\"hs\"}'\n"
         "  exit 0\n"
         "fi\n"
         "echo 'credentials not found in native keychain'\n"
         "exit 1\n";
  ASSERT_EQ(chmod(helper.c_str(), 0755), 0);
  std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  setenv("PATH", (dir_ + ":" + old_path).c_str(), 1);

  WriteConfig(R"({
    "credHelpers": {"helped.example.com": "imgfstest", "missing.example.com": "nonexistenthelper"},
    "auths": {"other.example.com": {"username": "o", "password": "p"},
              "missing.example.com": {"username": "m", "password": "p"}}
  })");
  auto helped = LookupCredentials(dir_, "helped.example.com");
  auto other = LookupCredentials(dir_, "other.example.com");
  auto missing = LookupCredentials(dir_, "missing.example.com");

  WriteConfig(
      R"({"credsStore": "imgfstest", "auths": {"fallback.example.com": {"username": "f", "password": "p"}}})");
  auto store = LookupCredentials(dir_, "helped.example.com");
  auto fallback = LookupCredentials(dir_, "fallback.example.com");
  setenv("PATH", old_path.c_str(), 1);

  ASSERT_TRUE(helped.ok() && helped->has_value()) << helped.status().ToString();
  EXPECT_EQ((*helped)->username, "hu");
  EXPECT_EQ((*helped)->password, "hs");
  ASSERT_TRUE(other.ok() && other->has_value());
  EXPECT_EQ((*other)->username, "o");
  ASSERT_TRUE(missing.ok() && missing->has_value());
  EXPECT_EQ((*missing)->username, "m");
  ASSERT_TRUE(store.ok() && store->has_value());
  EXPECT_EQ((*store)->username, "hu");
  ASSERT_TRUE(fallback.ok() && fallback->has_value());
  EXPECT_EQ((*fallback)->username, "f");
}

TEST(CredentialServerKeyTest, DockerHubUsesTheV1Url) {
  EXPECT_EQ(CredentialServerKey("docker.io"), "https://index.docker.io/v1/");
  EXPECT_EQ(CredentialServerKey("localhost:5000"), "localhost:5000");
}

}  // namespace
}  // namespace imgfs::registry
