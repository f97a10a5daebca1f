// Tests of the test harness itself: the real registry starts, stops and comes back with its
// content; the token server's JWTs are accepted by docker-registry; the test images build,
// push in both manifest forms and as a multi-platform index; TreeCompare finds what differs.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

class HarnessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto built = TestImages::Build({"busybox", "layered", "amd64", "arm64"});
    ASSERT_TRUE(built.ok()) << built.status().ToString();
    images_ = std::move(built).value().release();
  }
  static void TearDownTestSuite() {
    delete images_;
    images_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(images_, nullptr) << "test images failed to build"; }

  static TestImages* images_;
};
TestImages* HarnessTest::images_ = nullptr;

std::string HttpCode(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"curl", "-s",           "-o",         "/dev/null",
                                   "-w",   "%{http_code}", "--max-time", "10"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv).out;
}

TEST(ProcessTest, RunCapturesOutputAndExitCode) {
  RunResult r = RunCommand({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  RunResult literal = RunCommand({"echo", "$(id)", "; rm -rf /"});
  EXPECT_EQ(literal.out, "$(id) ; rm -rf /\n") << "arguments must not go through a shell";
  RunResult missing = RunCommand({"/nonexistent/binary"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_THAT(missing.err, HasSubstr("No such file"));
}

TEST(ProcessTest, RunReturnsWhenADaemonChildKeepsOutputOpen) {
  auto start = std::chrono::steady_clock::now();
  RunResult r = RunCommand({"/bin/sh", "-c", "sleep 30 & echo $!"});
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  ASSERT_FALSE(r.out.empty());
  kill(std::stoi(r.out), SIGKILL);  // the orphan started just above
}

TEST(ProcessTest, RunKillsOnTimeout) {
  RunOptions options;
  options.timeout_seconds = 1;
  RunResult r = RunCommand({"sleep", "20"}, options);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.ok());
}

TEST(RegistryServerTest, ServesStopsAndComesBackWithItsContent) {
  auto registry = RegistryServer::Create();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  RegistryServer& r = **registry;
  EXPECT_EQ(HttpCode({r.url() + "/v2/"}), "200");
  r.Stop();
  EXPECT_FALSE(PortAcceptsConnections(r.port()));
  EXPECT_NE(HttpCode({r.url() + "/v2/"}), "200");
  ASSERT_TRUE(r.Start().ok());
  EXPECT_EQ(HttpCode({r.url() + "/v2/"}), "200");
  EXPECT_FALSE(r.AccessLogLines("GET /v2/ ").empty()) << "access log must record requests";
}

TEST(RegistryServerTest, HtpasswdRegistryRequiresTheCredentials) {
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kHtpasswd;
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  RegistryServer& r = **registry;
  EXPECT_EQ(HttpCode({r.url() + "/v2/"}), "401");
  EXPECT_EQ(HttpCode({"-u", options.user + ":wrong", r.url() + "/v2/"}), "401");
  EXPECT_EQ(HttpCode({"-u", options.user + ":" + options.password, r.url() + "/v2/"}), "200");
}

TEST(TokenServerTest, DockerRegistryAcceptsItsTokensAndRejectsRequestsWithout) {
  auto tokens = TokenServer::Start({{"alice", "wonderland"}});
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = tokens->get();
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  RegistryServer& r = **registry;

  std::string scope = "repository:imgfs/probe:pull";
  std::string token_url = (*tokens)->realm() + "?service=" + (*tokens)->service() +
                          "&scope=" + scope;
  EXPECT_EQ(HttpCode({token_url}), "401") << "no credentials: no token";
  EXPECT_EQ(HttpCode({"-u", "alice:nope", token_url}), "401");
  auto answer = HttpGet(token_url, {}, "alice:wonderland");
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  std::string token;
  try {
    token = nlohmann::json::parse(*answer).at("token").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    FAIL() << "token answer is not the expected JSON: " << e.what() << ": " << *answer;
  }
  // The registry's catalogue of a missing repo answers 404 only once the token is accepted.
  std::string tags_url = r.url() + "/v2/imgfs/probe/tags/list";
  EXPECT_EQ(HttpCode({tags_url}), "401");
  EXPECT_EQ(HttpCode({"-H", "Authorization: Bearer not-a-token", tags_url}), "401");
  EXPECT_EQ(HttpCode({"-H", "Authorization: Bearer " + token, tags_url}), "404")
      << "docker-registry rejected the token; its log:\n"
      << ReadFile(r.app_log_path()).value();
  EXPECT_EQ(
      HttpCode({"-H", "Authorization: Bearer " + token, r.url() + "/v2/imgfs/other/tags/list"}),
      "401")
      << "a token for one repository must not open another";
  EXPECT_EQ(HttpCode({"-H", "Authorization: Bearer " + token, r.url() + "/v2/"}), "200");
}

TEST(TokenServerTest, SkopeoPushesThroughTokenAuth) {
  auto tokens = TokenServer::Start({{"alice", "wonderland"}});
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  RegistryOptions options;
  options.auth = RegistryOptions::Auth::kToken;
  options.token_server = tokens->get();
  auto registry = RegistryServer::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto layout_dir = TempDir("oci");
  auto layout = OciLayout::Init(layout_dir.Sub("oci"));
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_TRUE(BuildPlatformImage(*layout, "t", "amd64", layout_dir.Sub("work")).ok());
  auto denied = PushImage(*layout, "t", (*registry)->host() + "/imgfs/tok:t");
  EXPECT_FALSE(denied.ok()) << "push without credentials must be refused";
  auto pushed = PushImage(*layout, "t", (*registry)->host() + "/imgfs/tok:t",
                          PushOptions{ManifestFormat::kOci, "alice:wonderland"});
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  EXPECT_TRUE(ValidateDigest(*pushed).ok()) << *pushed;
}

TEST_F(HarnessTest, ReferenceTreesHoldWhatTheImagesPromise) {
  std::string root = images_->ReferenceRoot("layered");
  struct stat st;
  // Layer 2's whiteout and opaque directory, and layer 3's deletion, took effect.
  EXPECT_NE(lstat((root + "/data/remove-me").c_str(), &st), 0);
  EXPECT_NE(lstat((root + "/data/gone-in-layer3").c_str(), &st), 0);
  EXPECT_NE(lstat((root + "/etc/replaced/a").c_str(), &st), 0);
  EXPECT_NE(lstat((root + "/etc/replaced/sub").c_str(), &st), 0);
  EXPECT_EQ(lstat((root + "/etc/replaced/only-in-layer2").c_str(), &st), 0);
  EXPECT_EQ(lstat((root + "/etc/replaced/added-in-layer3").c_str(), &st), 0);
  EXPECT_EQ(ReadFile(root + "/etc/hostname").value(), "layered-image, layer 3\n");
  // Hard links, inside layer 2 and to layer 1.
  struct stat a, b, keep, lower;
  ASSERT_EQ(lstat((root + "/data/hardlink-a").c_str(), &a), 0);
  ASSERT_EQ(lstat((root + "/data/hardlink-b").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  ASSERT_EQ(lstat((root + "/data/keep").c_str(), &keep), 0);
  ASSERT_EQ(lstat((root + "/data/link-to-lower").c_str(), &lower), 0);
  EXPECT_EQ(keep.st_ino, lower.st_ino);
  // Setuid, xattrs, the big file, the long path, owners.
  ASSERT_EQ(lstat((root + "/bin/setuid-tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  char value[64] = {};
  ssize_t n = lgetxattr((root + "/etc/xattr-file").c_str(), "user.imgfs.test", value, sizeof value);
  EXPECT_EQ(std::string(value, n > 0 ? n : 0), "hello xattr");
  ASSERT_EQ(lstat((root + "/big/blob.bin").c_str(), &st), 0);
  EXPECT_GE(st.st_size, 16 << 20);
  std::string deep = root + "/deep/" + std::string(70, 'd') + "/" + std::string(80, 'f') + ".txt";
  EXPECT_EQ(lstat(deep.c_str(), &st), 0) << deep;
  ASSERT_EQ(lstat((root + "/etc/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  ASSERT_EQ(lstat((root + "/etc/nsec-file").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  ASSERT_EQ(lstat((root + "/dev/testnull").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
}

TEST_F(HarnessTest, TreeCompareFindsNoDifferenceBetweenTwoUnpacksOfOneImage) {
  TempDir tmp("again");
  ASSERT_TRUE(images_->layout().Unpack("layered", tmp.Sub("b")).ok());
  TreeDiff diff = CompareTrees(images_->ReferenceRoot("layered"), tmp.Sub("b") + "/rootfs");
  EXPECT_TRUE(diff.empty()) << diff.ToString();
  EXPECT_GT(diff.entries_compared, 30u);
}

TEST_F(HarnessTest, TreeCompareReportsEachKindOfChange) {
  TempDir tmp("changed");
  ASSERT_TRUE(images_->layout().Unpack("layered", tmp.Sub("b")).ok());
  std::string root = tmp.Sub("b") + "/rootfs";
  ASSERT_TRUE(WriteFile(root + "/etc/empty", "now not empty").ok());
  ASSERT_EQ(chmod((root + "/data/exec.sh").c_str(), 0644), 0);
  ASSERT_EQ(lchown((root + "/data/private").c_str(), 0, 0), 0);
  ASSERT_EQ(unlink((root + "/links/relative").c_str()), 0);
  ASSERT_EQ(symlink("elsewhere", (root + "/links/relative").c_str()), 0);
  ASSERT_EQ(lremovexattr((root + "/etc/xattr-file").c_str(), "user.imgfs.test"), 0);
  ASSERT_EQ(lsetxattr((root + "/data/keep").c_str(), "user.layer", "two", 3, 0), 0);
  ASSERT_EQ(unlink((root + "/secret/key").c_str()), 0);
  ASSERT_TRUE(WriteFile(root + "/extra", "x").ok());
  // Break a hard link: same content and metadata, new inode.
  std::string b = root + "/data/hardlink-b";
  std::string content = ReadFile(b).value();
  struct stat st;
  ASSERT_EQ(lstat(b.c_str(), &st), 0);
  ASSERT_EQ(unlink(b.c_str()), 0);
  ASSERT_TRUE(WriteFile(b, content, st.st_mode & 07777).ok());
  timespec times[2] = {st.st_mtim, st.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, b.c_str(), times, AT_SYMLINK_NOFOLLOW), 0);
  // Same size, one byte different, in the middle of the big file.
  {
    int fd = open((root + "/big/blob.bin").c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "Z", 1, 9 << 20), 1);
    close(fd);
    timespec t[2] = {{1600000000, 0}, {1600000000, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, (root + "/big/blob.bin").c_str(), t, 0), 0);
  }

  TreeDiff diff = CompareTrees(images_->ReferenceRoot("layered"), root);
  std::string report = diff.ToString();
  EXPECT_THAT(report, HasSubstr("/etc/empty: size: expected 0, got 13"));
  EXPECT_THAT(report, HasSubstr("/etc/empty: content:"));
  EXPECT_THAT(report, HasSubstr("/data/exec.sh: mode: expected 0755, got 0644"));
  EXPECT_THAT(report, HasSubstr("/data/private: owner: expected 1000:1000, got 0:0"));
  EXPECT_THAT(report, HasSubstr("/links/relative: symlink target: expected \"../etc/hostname\""));
  EXPECT_THAT(report, HasSubstr("/etc/xattr-file: xattr user.imgfs.test missing"));
  EXPECT_THAT(report, HasSubstr("/data/keep: xattr user.layer: expected \"one\", got \"two\""));
  EXPECT_THAT(report, HasSubstr("/secret/key: missing"));
  EXPECT_THAT(report, HasSubstr("/extra: unexpected regular file"));
  EXPECT_THAT(report, HasSubstr("/data/hardlink-b: hard link broken"));
  EXPECT_THAT(report, HasSubstr("/big/blob.bin: content:"));
  EXPECT_THAT(report, Not(HasSubstr("/big/blob.bin: size")));
}

TEST_F(HarnessTest, ImagesPushInBothFormsAndAsAMultiPlatformIndex) {
  auto registry = RegistryServer::Create();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  std::string host = (*registry)->host();
  auto oci = images_->Push("layered", host, "imgfs/layered", "oci");
  ASSERT_TRUE(oci.ok()) << oci.status().ToString();
  auto v2 = images_->Push("layered", host, "imgfs/layered", "v2",
                          PushOptions{ManifestFormat::kDockerV2, ""});
  ASSERT_TRUE(v2.ok()) << v2.status().ToString();
  EXPECT_NE(oci->digest, v2->digest);

  auto manifest = HttpGet((*registry)->url() + "/v2/imgfs/layered/manifests/v2",
                          {"Accept: application/vnd.docker.distribution.manifest.v2+json"});
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  auto m = nlohmann::json::parse(*manifest);
  EXPECT_EQ(m["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
  EXPECT_EQ(m["layers"].size(), 3u);
  EXPECT_EQ(Sha256Digest(*manifest), v2->digest);

  auto multi = images_->PushMultiPlatform(host, "imgfs/multi", "latest");
  ASSERT_TRUE(multi.ok()) << multi.status().ToString();
  auto index = HttpGet((*registry)->url() + "/v2/imgfs/multi/manifests/latest",
                       {"Accept: application/vnd.oci.image.index.v1+json"});
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(Sha256Digest(*index), multi->digest);
  auto j = nlohmann::json::parse(*index);
  ASSERT_EQ(j["manifests"].size(), 2u);
  EXPECT_EQ(j["manifests"][0]["platform"]["architecture"], "amd64");
  EXPECT_EQ(j["manifests"][1]["platform"]["architecture"], "arm64");
  EXPECT_EQ(ReadFile(images_->ReferenceRoot("arm64") + "/etc/arch").value(), "arm64\n");
}

}  // namespace
}  // namespace imgfs::test
