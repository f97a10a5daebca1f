// The config files as users keep them: imgfs's config.toml, containers' registries.conf,
// docker's daemon.json, their precedence, the flags over them, and errors naming file:line.
#include "cli/config.h"
#include "tests/support/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace imgfs::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    paths_.docker_daemon = Path("daemon.json");
    paths_.registries_conf = Path("registries.conf");
    paths_.imgfs = {Path("etc-config.toml"), Path("user-config.toml")};
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(Path(name)) << text;
  }

  test::TempDir tmp_{"config"};
  const std::filesystem::path dir_ = tmp_.path();
  ConfigPaths paths_;
};

TEST_F(ConfigTest, NoFilesGiveTheDefaults) {
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->cache_dir.value, "");
  EXPECT_EQ(c->cache_dir.source, "default");
  EXPECT_EQ(c->pull_policy.value, "missing");
  EXPECT_EQ(c->stall_timeout_s.value, 30);
  EXPECT_TRUE(c->registries.empty());
  ASSERT_EQ(c->files.size(), 4u);
  for (const auto& [path, state] : c->files) EXPECT_EQ(state, "not found") << path;
}

TEST_F(ConfigTest, EveryKeyOfTheImgfsFileWithItsLine) {
  Write("etc-config.toml", R"([cache]
dir = "/var/cache/imgfs"
max_size = "20GiB"

[pull]
platform = "linux/arm64/v8"
policy = "always"
stall_timeout = 5

[[registry]]
location = "10.0.0.7:5000"
insecure = true

[[registry]]
location = "index.docker.io"
[[registry.mirror]]
location = "127.0.0.1:5001"
[[registry.mirror]]
location = "https://mirror.example.com/"
)");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  const std::string f = Path("etc-config.toml");
  EXPECT_EQ(c->cache_dir.value, "/var/cache/imgfs");
  EXPECT_EQ(c->cache_dir.source, f + ":2");
  EXPECT_EQ(c->cache_max_size.value, 20ull << 30);
  EXPECT_EQ(c->cache_max_size.source, f + ":3");
  EXPECT_EQ(c->platform.value, "linux/arm64/v8");
  EXPECT_EQ(c->pull_policy.value, "always");
  EXPECT_EQ(c->pull_policy.source, f + ":7");
  EXPECT_EQ(c->stall_timeout_s.value, 5);
  const RegistryConfig* local = c->Registry("10.0.0.7:5000");
  ASSERT_NE(local, nullptr);
  EXPECT_TRUE(local->insecure.value);
  EXPECT_EQ(local->insecure.source, f + ":12");
  const RegistryConfig* hub = c->Registry("docker.io");  // index.docker.io is docker.io
  ASSERT_NE(hub, nullptr);
  // A loopback mirror is plain http, as loopback registries are.
  EXPECT_THAT(hub->mirrors, ElementsAre("http://127.0.0.1:5001", "https://mirror.example.com"));
  EXPECT_EQ(hub->mirrors_source, f + ":16");
}

TEST_F(ConfigTest, TheUsersFileWinsOverTheSystemsAndRegistriesConfOverDaemonJson) {
  Write("daemon.json", R"({"registry-mirrors": ["https://daemon-mirror.example.com"],
                           "insecure-registries": ["10.9.9.9:5000"], "debug": true})");
  Write("registries.conf", R"(unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "example.com/foo"
location = "quay.io"
blocked = false
[[registry.mirror]]
location = "quay-mirror.example.com:8443"
[[registry.mirror]]
location = "10.1.1.1:5000"
insecure = true

[registries.insecure]
registries = ["old-style.example.com"]
)");
  Write("etc-config.toml", "[pull]\npolicy = \"never\"\n[cache]\ndir = \"/system\"\n");
  Write("user-config.toml", "[cache]\ndir = \"/mine\"\n");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->cache_dir.value, "/mine");
  EXPECT_EQ(c->cache_dir.source, Path("user-config.toml") + ":2");
  EXPECT_EQ(c->pull_policy.value, "never");
  const RegistryConfig* hub = c->Registry("docker.io");
  ASSERT_NE(hub, nullptr);
  EXPECT_THAT(hub->mirrors, ElementsAre("https://daemon-mirror.example.com"));
  EXPECT_EQ(hub->mirrors_source, Path("daemon.json"));
  ASSERT_NE(c->Registry("10.9.9.9:5000"), nullptr);
  EXPECT_TRUE(c->Registry("10.9.9.9:5000")->insecure.value);
  const RegistryConfig* quay = c->Registry("quay.io");
  ASSERT_NE(quay, nullptr);
  EXPECT_THAT(quay->mirrors,
              ElementsAre("https://quay-mirror.example.com:8443", "http://10.1.1.1:5000"));
  EXPECT_EQ(quay->mirrors_source, Path("registries.conf") + ":6");
  ASSERT_NE(c->Registry("old-style.example.com"), nullptr);
  EXPECT_TRUE(c->Registry("old-style.example.com")->insecure.value);

  // imgfs's file names other mirrors for docker.io: they replace daemon.json's.
  Write("user-config.toml",
        "[[registry]]\nlocation = \"docker.io\"\n[[registry.mirror]]\nlocation = \"hub.local\"\n");
  c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_THAT(c->Registry("docker.io")->mirrors, ElementsAre("https://hub.local"));
}

TEST_F(ConfigTest, RegistriesConfDropInsOverrideByLocationInLexicalOrder) {
  paths_.registries_conf_d = Path("registries.conf.d");
  std::filesystem::create_directories(paths_.registries_conf_d);
  Write("registries.conf", R"([[registry]]
location = "quay.io"
insecure = true
[[registry.mirror]]
location = "base-mirror.example.com"

[[registry]]
location = "ghcr.io"
[[registry.mirror]]
location = "ghcr-mirror.example.com"
)");
  // Read in lexical order, whatever order they were written in; not-.conf files are ignored.
  Write("registries.conf.d/20-quay.conf", R"([[registry]]
location = "quay.io"
[[registry.mirror]]
location = "late-mirror.example.com"
)");
  Write("registries.conf.d/10-quay.conf", R"([[registry]]
location = "quay.io"
[[registry.mirror]]
location = "early-mirror.example.com"
)");
  Write("registries.conf.d/15-other.conf", R"([[registry]]
location = "10.3.3.3:5000"
insecure = true
)");
  Write("registries.conf.d/99-ignored.conf.bak",
        "[[registry]]\nlocation = \"quay.io\"\ninsecure = true\n");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  const RegistryConfig* quay = c->Registry("quay.io");
  ASSERT_NE(quay, nullptr);
  // 20-quay.conf's [[registry]] replaced the whole entry: its mirror, and no longer insecure.
  EXPECT_THAT(quay->mirrors, ElementsAre("https://late-mirror.example.com"));
  EXPECT_EQ(quay->mirrors_source, Path("registries.conf.d/20-quay.conf") + ":3");
  EXPECT_EQ(quay->insecure.source, "default");
  const RegistryConfig* ghcr = c->Registry("ghcr.io");
  ASSERT_NE(ghcr, nullptr);
  EXPECT_THAT(ghcr->mirrors, ElementsAre("https://ghcr-mirror.example.com"));
  EXPECT_EQ(ghcr->mirrors_source, Path("registries.conf") + ":9");
  const RegistryConfig* other = c->Registry("10.3.3.3:5000");
  ASSERT_NE(other, nullptr);
  EXPECT_TRUE(other->insecure.value);
  EXPECT_EQ(other->insecure.source, Path("registries.conf.d/15-other.conf") + ":3");
  std::vector<std::string> read;
  for (const auto& [path, state] : c->files) {
    if (state == "read") read.push_back(path);
  }
  EXPECT_THAT(read, ElementsAre(Path("registries.conf"), Path("registries.conf.d/10-quay.conf"),
                                Path("registries.conf.d/15-other.conf"),
                                Path("registries.conf.d/20-quay.conf")));

  // The drop-ins are read without a registries.conf too, and imgfs's own file still wins.
  std::filesystem::remove(Path("registries.conf"));
  Write("user-config.toml",
        "[[registry]]\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"mine.local\"\n");
  c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_THAT(c->Registry("quay.io")->mirrors, ElementsAre("https://mine.local"));
  EXPECT_EQ(c->Registry("ghcr.io"), nullptr);
  EXPECT_TRUE(c->Registry("10.3.3.3:5000")->insecure.value);
}

TEST_F(ConfigTest, CidrRangesOfDaemonJsonReachTheInsecureList) {
  Write("daemon.json", R"({"insecure-registries": ["10.0.0.0/8", "192.168.1.7:5000"]})");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  CommonOptions common;
  ApplyConfig(*c, &common);
  EXPECT_THAT(common.insecure_registries, ElementsAre("10.0.0.0/8", "192.168.1.7:5000"));
}

TEST_F(ConfigTest, DropInDirectoryIsBesideRegistriesConf) {
  ::setenv("CONTAINERS_REGISTRIES_CONF", "/srv/conf/registries.conf", 1);
  ConfigPaths p = ConfigPaths::FromEnvironment();
  ::unsetenv("CONTAINERS_REGISTRIES_CONF");
  EXPECT_EQ(p.registries_conf_d, "/srv/conf/registries.conf.d");
}

TEST_F(ConfigTest, FlagsWinAndTheEnvironmentBeatsFiles) {
  Write("user-config.toml", R"([cache]
dir = "/from-file"
max_size = 1000
[pull]
policy = "always"
platform = "linux/arm64"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "file-mirror.example.com"
)");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  CommonOptions common;
  common.pull = "never";
  common.cache_max_size = 5;
  common.registry_mirrors = {"https://flag-mirror.example.com", "ghcr.io=http://127.0.0.1:9"};
  common.insecure_registries = {"10.2.2.2:5000"};
  common.flags_given = {"--pull", "--cache-max-size"};
  ::setenv("IMGFS_CACHE", "/from-env", 1);
  Status st = OverlayFlags(common, &*c);
  ::unsetenv("IMGFS_CACHE");
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(c->cache_dir.value, "/from-env");
  EXPECT_EQ(c->cache_dir.source, "env IMGFS_CACHE");
  EXPECT_EQ(c->pull_policy.value, "never");
  EXPECT_EQ(c->pull_policy.source, "flag --pull");
  EXPECT_EQ(c->cache_max_size.value, 5u);
  EXPECT_EQ(c->platform.value, "linux/arm64");  // not given: the file's
  EXPECT_THAT(c->Registry("docker.io")->mirrors, ElementsAre("https://flag-mirror.example.com"));
  EXPECT_EQ(c->Registry("docker.io")->mirrors_source, "flag --registry-mirror");
  EXPECT_THAT(c->Registry("ghcr.io")->mirrors, ElementsAre("http://127.0.0.1:9"));
  EXPECT_EQ(c->Registry("10.2.2.2:5000")->insecure.source, "flag --insecure-registry");

  CommonOptions applied;
  ApplyConfig(*c, &applied);
  EXPECT_EQ(applied.cache_dir, "/from-env");
  EXPECT_EQ(applied.pull, "never");
  EXPECT_EQ(applied.platform, "linux/arm64");
  EXPECT_THAT(applied.registry_mirrors, ElementsAre("docker.io=https://flag-mirror.example.com",
                                                    "ghcr.io=http://127.0.0.1:9"));
  EXPECT_THAT(applied.insecure_registries, ElementsAre("10.2.2.2:5000"));

  common.registry_mirrors = {"ghcr.io="};
  EXPECT_THAT(OverlayFlags(common, &*c).message(), HasSubstr("--registry-mirror 'ghcr.io='"));
}

TEST_F(ConfigTest, IndexTrustComesFromTheFilesAndTheFlagsTogether) {
  Write("user-config.toml", R"([index]
trust_from = ["10.0.0.5:5000", "ghcr.io/org/app"]
)");
  Result<Config> c = LoadConfig(paths_);
  ASSERT_TRUE(c.ok()) << c.status().message();
  CommonOptions common;
  common.trust_index_from = {"127.0.0.1:5000/team"};
  common.flags_given = {"--trust-index-from"};
  ASSERT_TRUE(OverlayFlags(common, &*c).ok());
  ASSERT_EQ(c->trust_index_from.size(), 3u);
  EXPECT_EQ(c->trust_index_from[0].value, "10.0.0.5:5000");
  EXPECT_EQ(c->trust_index_from[0].source, Path("user-config.toml") + ":2");
  EXPECT_EQ(c->trust_index_from[2].source, "flag --trust-index-from");
  CommonOptions applied;
  ApplyConfig(*c, &applied);
  EXPECT_THAT(applied.trust_index_from,
              ElementsAre("10.0.0.5:5000", "ghcr.io/org/app", "127.0.0.1:5000/team"));

  Write("user-config.toml", "[index]\ntrust_from = \"10.0.0.5:5000\"\n");
  EXPECT_THAT(LoadConfig(paths_).status().message(),
              HasSubstr(":2: 'index.trust_from' must be an array of strings"));
}

TEST_F(ConfigTest, MalformedFilesNameTheFileAndLine) {
  const std::string f = Path("user-config.toml");
  struct Case {
    std::string text;
    std::string expected;
  };
  const Case cases[] = {
      {"[cache]\ndir = \"/x\"\nmaxsize = 3\n", f + ":3: unknown key 'cache.maxsize'"},
      {"[pull]\npolicy = \"sometimes\"\n", f + ":2: 'pull.policy' must be"},
      {"[pull]\nplatform = \"linux/\"\n", f + ":2: pull.platform: "},
      {"[pull]\nstall_timeout = \"30\"\n", f + ":2: 'pull.stall_timeout' must be seconds"},
      {"[cache]\nmax_size = \"lots\"\n", f + ":2: cache.max_size: 'lots' is not a size"},
      {"[cache]\nmax_size = -1\n", f + ":2: 'cache.max_size' must be a size"},
      {"[[registry]]\ninsecure = true\n", f + ":1: [[registry]] without a location"},
      {"[[registry]]\nlocation = 5\n", f + ":2: 'registry.location' must be a string"},
      {"registry = 3\n", f + ":1: 'registry' must be an array of tables"},
      {"\n\n[cache\n", f + ":3:"},
      {"[cache]\ndir = \n", f + ":2:"},
  };
  for (const Case& c : cases) {
    Write("user-config.toml", c.text);
    Result<Config> got = LoadConfig(paths_);
    ASSERT_FALSE(got.ok()) << c.text;
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument) << c.text;
    EXPECT_THAT(got.status().message(), HasSubstr(c.expected)) << c.text;
  }
  // registries.conf is shared with other tools: keys imgfs does not use are not errors, but a
  // broken file is.
  std::filesystem::remove(f);
  Write("registries.conf", "short-name-mode = \"enforcing\"\n[[registry]]\nlocation = [\n");
  Result<Config> got = LoadConfig(paths_);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr(Path("registries.conf") + ":"));
}

TEST_F(ConfigTest, AnExplicitConfigFileMustExist) {
  paths_.imgfs = {Path("missing.toml")};
  paths_.imgfs_required = true;
  Result<Config> got = LoadConfig(paths_);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("$IMGFS_CONFIG names " + Path("missing.toml")));
}

TEST(ByteSizeTest, UnitsAsDockerAndPodmanWriteThem) {
  EXPECT_EQ(*ParseByteSize("123"), 123u);
  EXPECT_EQ(*ParseByteSize("20GiB"), 20ull << 30);
  EXPECT_EQ(*ParseByteSize("20G"), 20ull << 30);
  EXPECT_EQ(*ParseByteSize("500MB"), 500000000u);
  EXPECT_EQ(*ParseByteSize("1.5 KiB"), 1536u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
  for (const char* bad : {"", "GiB", "-1", "1..2G", "5 parsecs", "99999999999TB"}) {
    EXPECT_FALSE(ParseByteSize(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace imgfs::cli
