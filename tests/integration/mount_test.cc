// imgfs against the real registry: a mounted image equals `umoci unpack` of the same image,
// in OCI and Docker v2 form; references by tag, digest and tag@digest; platform selection from
// an index; offline mounts from the cache; inspect; and clear errors for bad input.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <ostream>

#include "base/digest.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;

// Whether process `pid` has libcurl mapped (/proc/PID/maps).
bool MapsLibcurl(pid_t pid) {
  auto maps = ReadFile("/proc/" + std::to_string(pid) + "/maps");
  return maps.ok() && maps->find("/libcurl.so") != std::string::npos;
}

// Every test gets its own cache, so no test is served by what another one fetched.
class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Mounts `image` and asserts that imgfs reported success and the mount is there.
  void MountOrFail(ImgfsMount& mount, const std::string& image,
                   const std::vector<std::string>& args = {}) {
    RunResult r = mount.Mount(image, args);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
    ASSERT_TRUE(mount.mounted()) << "imgfs mount returned 0 but " << mount.path()
                                 << " is not a mount point";
  }

  void ExpectEqualsReference(const ImgfsMount& mount, const std::string& name) {
    TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot(name), mount.path());
    EXPECT_TRUE(diff.empty()) << diff.total << " differences between umoci unpack of " << name
                              << " and the imgfs mount:\n"
                              << diff.ToString() << "daemon log:\n"
                              << mount.LogTail();
    EXPECT_GE(diff.entries_compared, 4u) << "the reference tree of " << name << " is empty";
  }

  TempDir cache_{"cache"};
};

// ---- the mounted tree equals the reference, in both manifest forms ----

struct ImageCase {
  std::string name;
  ManifestFormat format;
};

// Readable test names in ctest and failure messages.
void PrintTo(const ImageCase& c, std::ostream* os) {
  *os << c.name << (c.format == ManifestFormat::kOci ? "/oci" : "/docker-v2");
}

class MountEqualsUnpackTest : public MountTest, public ::testing::WithParamInterface<ImageCase> {};

TEST_P(MountEqualsUnpackTest, MountedTreeEqualsUmociUnpack) {
  auto pushed = TestWorld::Get().Pushed(GetParam().name, GetParam().format);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ImgfsMount mount(cache_.path());
  MountOrFail(mount, pushed->ByTag());
  ExpectEqualsReference(mount, GetParam().name);
  RunResult u = mount.Unmount();
  EXPECT_TRUE(u.ok()) << u.Describe();
  EXPECT_FALSE(mount.mounted());
  EXPECT_EQ(mount.forced_cleanup(), "") << "imgfs umount must unmount and end the daemon";
}

INSTANTIATE_TEST_SUITE_P(Images, MountEqualsUnpackTest,
                         ::testing::Values(ImageCase{"busybox", ManifestFormat::kOci},
                                           ImageCase{"busybox", ManifestFormat::kDockerV2},
                                           ImageCase{"layered", ManifestFormat::kOci},
                                           ImageCase{"layered", ManifestFormat::kDockerV2}),
                         [](const ::testing::TestParamInfo<ImageCase>& param_info) {
                           bool oci = param_info.param.format == ManifestFormat::kOci;
                           return param_info.param.name + (oci ? "_oci" : "_docker_v2");
                         });

TEST_F(MountTest, HardLinkedFilesShareAnInodeAndTheOverlayRulesHold) {
  auto pushed = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ImgfsMount mount(cache_.path());
  MountOrFail(mount, pushed->ByTag());
  struct stat a {
  }, b{}, keep{}, lower{};
  ASSERT_EQ(lstat(mount.Path("data/hardlink-a").c_str(), &a), 0) << strerror(errno);
  ASSERT_EQ(lstat(mount.Path("data/hardlink-b").c_str(), &b), 0) << strerror(errno);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  ASSERT_EQ(lstat(mount.Path("data/keep").c_str(), &keep), 0) << strerror(errno);
  ASSERT_EQ(lstat(mount.Path("data/link-to-lower").c_str(), &lower), 0) << strerror(errno);
  EXPECT_EQ(keep.st_ino, lower.st_ino) << "a hard link to a file of a lower layer";
  struct stat st {};
  EXPECT_NE(lstat(mount.Path("data/remove-me").c_str(), &st), 0) << "whiteout ignored";
  EXPECT_NE(lstat(mount.Path("etc/replaced/a").c_str(), &st), 0) << "opaque directory ignored";
  EXPECT_EQ(ReadFile(mount.Path("etc/hostname")).value(), "layered-image, layer 3\n");
}

// ---- references ----

TEST_F(MountTest, MountsByDigestAndByTagAtDigest) {
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  for (const std::string& ref : {pushed->ByDigest(), pushed->ByTagAndDigest()}) {
    SCOPED_TRACE(ref);
    TempDir cache("cache");
    ImgfsMount mount(cache.path());
    MountOrFail(mount, ref);
    ExpectEqualsReference(mount, "busybox");
  }
}

TEST_F(MountTest, DigestThatIsNotInTheRepositoryFailsClearly) {
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  std::string absent = Sha256Digest("no image has this manifest");
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(pushed->host + "/" + pushed->repo + "@" + absent);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr(std::string(DigestHex(absent)).substr(0, 12))) << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

TEST_F(MountTest, TagAtDigestOfAnImageInAnotherRepositoryFails) {
  auto busybox = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(busybox.ok()) << busybox.status().ToString();
  auto layered = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
  ASSERT_TRUE(layered.ok()) << layered.status().ToString();
  // The busybox manifest is not in imgfs/layered, whatever the tag says.
  std::string ref = layered->host + "/" + layered->repo + ":" + layered->tag + "@" +
                    busybox->digest;
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(ref);
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr(std::string(DigestHex(busybox->digest)).substr(0, 12)))
      << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

// ---- platforms ----

TEST_F(MountTest, MultiPlatformDefaultsToTheHostPlatform) {
  auto multi = TestWorld::Get().MultiPlatform();
  ASSERT_TRUE(multi.ok()) << multi.status().ToString();
  std::string host_arch = HostArchitecture();
  ASSERT_TRUE(host_arch == "amd64" || host_arch == "arm64")
      << "the multi-platform test image has amd64 and arm64 only; this host is " << host_arch;
  ImgfsMount mount(cache_.path());
  MountOrFail(mount, multi->ByTag());
  EXPECT_EQ(ReadFile(mount.Path("etc/arch")).value(), host_arch + "\n");
  ExpectEqualsReference(mount, host_arch);
}

TEST_F(MountTest, PlatformFlagPicksTheOtherImage) {
  auto multi = TestWorld::Get().MultiPlatform();
  ASSERT_TRUE(multi.ok()) << multi.status().ToString();
  std::string other = HostArchitecture() == "arm64" ? "amd64" : "arm64";
  ImgfsMount mount(cache_.path());
  MountOrFail(mount, multi->ByTag(), {"--platform", "linux/" + other});
  EXPECT_EQ(ReadFile(mount.Path("etc/arch")).value(), other + "\n");
  ExpectEqualsReference(mount, other);
}

TEST_F(MountTest, UnavailablePlatformFailsListingTheAvailableOnes) {
  auto multi = TestWorld::Get().MultiPlatform();
  ASSERT_TRUE(multi.ok()) << multi.status().ToString();
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(multi->ByTag(), {"--platform", "linux/s390x"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err,
              AllOf(HasSubstr("linux/s390x"), HasSubstr("linux/amd64"), HasSubstr("linux/arm64")))
      << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

TEST_F(MountTest, SinglePlatformImageForAnotherPlatformFailsWhenAskedFor) {
  // busybox is a plain manifest for this host; asking for another platform must not silently
  // mount it (docker: "does not match the specified platform").
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(pushed->ByDigest(), {"--platform", "linux/s390x"});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, AllOf(HasSubstr("linux/s390x"), HasSubstr("only"))) << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

// ---- offline ----

TEST_F(MountTest, CachedImageMountsOfflineAndPullAlwaysFailsClearly) {
  // A registry of its own: this test stops it.
  auto registry = RegistryServer::Create();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto images = TestWorld::Get().Images("layered");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  auto pushed = (*images)->Push("layered", (*registry)->host(), "imgfs/offline", "v1");
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  {
    ImgfsMount mount(cache_.path());
    MountOrFail(mount, pushed->ByTag());
    ExpectEqualsReference(mount, "layered");  // reads every file: all of it is now cached
    std::vector<pid_t> daemons = ImgfsProcessesFor(mount.path());
    ASSERT_FALSE(daemons.empty()) << "no imgfs daemon serves " << mount.path();
    EXPECT_TRUE(MapsLibcurl(daemons.front())) << "a daemon that fetched has no libcurl mapped";
    RunResult u = mount.Unmount();
    ASSERT_TRUE(u.ok()) << u.Describe();
  }
  (*registry)->Stop();
  for (const std::string pull : {"missing", "never"}) {
    SCOPED_TRACE("offline, --pull " + pull);
    ImgfsMount mount(cache_.path());
    MountOrFail(mount, pushed->ByTag(), {"--pull", pull});
    ExpectEqualsReference(mount, "layered");
    // Served from the cache alone: the daemon never loaded libcurl (registry/curl_library.h),
    // whose 27 libraries would cost a warm mount ~30 ms of start-up with a cold page cache.
    std::vector<pid_t> daemons = ImgfsProcessesFor(mount.path());
    ASSERT_FALSE(daemons.empty()) << "no imgfs daemon serves " << mount.path();
    for (pid_t pid : daemons) {
      EXPECT_FALSE(MapsLibcurl(pid)) << "daemon " << pid << " loaded libcurl for a cached image";
    }
  }
  {
    ImgfsMount mount(cache_.path());
    RunResult r = mount.Mount(pushed->ByTag(), {"--pull", "always"});
    EXPECT_NE(r.exit_code, 0) << "--pull always must revalidate with the (stopped) registry";
    EXPECT_THAT(r.err, AnyOf(HasSubstr((*registry)->host()), HasSubstr("onnect"))) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }
}

// ---- inspect ----

TEST_F(MountTest, InspectJsonNamesTheManifestDigestAndLayers) {
  auto pushed = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  RunResult r = RunImgfs(
      {"inspect", "--cache", cache_.path(), "--format", "json", pushed->ByTag()});
  ASSERT_TRUE(r.ok()) << r.Describe();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(r.out);
  } catch (const nlohmann::json::exception& e) {
    FAIL() << "inspect --format json printed invalid JSON (" << e.what() << "):\n" << r.out;
  }
  EXPECT_EQ(j.value("digest", ""), pushed->digest) << r.out;
  EXPECT_THAT(j.value("reference", ""), HasSubstr("imgfs/layered")) << r.out;
  EXPECT_EQ(j.value("mediaType", ""), "application/vnd.oci.image.manifest.v1+json") << r.out;
  EXPECT_TRUE(j.contains("platform")) << r.out;
  ASSERT_TRUE(j.contains("layers") && j["layers"].is_array()) << r.out;
  ASSERT_EQ(j["layers"].size(), 3u) << r.out;
  for (const auto& layer : j["layers"]) {
    EXPECT_TRUE(layer.contains("mediaType") && layer.contains("size") && layer.contains("digest"))
        << layer.dump();
    EXPECT_TRUE(ValidateDigest(layer.value("digest", "")).ok()) << layer.dump();
  }
  ASSERT_TRUE(j.contains("config") && j["config"].is_object()) << r.out;
}

// ---- errors ----

TEST_F(MountTest, UnknownRepositoryFailsClearly) {
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount((*registry)->host() + "/imgfs/no-such-repo:latest");
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("imgfs/no-such-repo")) << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

TEST_F(MountTest, UnknownTagFailsClearly) {
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(pushed->host + "/" + pushed->repo + ":no-such-tag");
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("no-such-tag")) << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

TEST_F(MountTest, MalformedReferencesFailClearly) {
  for (const std::string ref :
       {"UPPERCASE", "library/Busybox", "a::b", "repo@sha256:abc", "repo:", "a//b"}) {
    SCOPED_TRACE(ref);
    ImgfsMount mount(cache_.path());
    RunResult r = mount.Mount(ref);
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_EQ(r.term_signal, 0) << r.Describe();
    // Docker's wording is "invalid reference format"; quoting the reference is as good.
    EXPECT_THAT(Lower(r.err), AnyOf(HasSubstr("invalid reference"), HasSubstr(Lower(ref))))
        << r.Describe();
    // A malformed reference is rejected before any network access.
    EXPECT_THAT(Lower(r.err), ::testing::Not(HasSubstr("resolve"))) << r.Describe();
    EXPECT_FALSE(mount.mounted());
  }
}

TEST_F(MountTest, UppercaseFirstComponentIsARegistryHostAsInDocker) {
  // Docker's reference grammar (distribution/reference splitDockerDomain) reads a first path
  // component with an uppercase letter as a registry host, so "UPPER/case" is repository
  // "case" on host "UPPER", not a malformed name. No such host: a clear failure naming it.
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount("UPPER/case");
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.term_signal, 0) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("UPPER")) << r.Describe();
  EXPECT_FALSE(mount.mounted());
}

TEST_F(MountTest, WritesToTheMountFailWithEROFS) {
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  ImgfsMount mount(cache_.path());
  MountOrFail(mount, pushed->ByTag());
  errno = 0;
  int fd = open(mount.Path("etc/os-release").c_str(), O_WRONLY);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS) << strerror(errno);
  if (fd >= 0) close(fd);
  errno = 0;
  fd = open(mount.Path("new-file").c_str(), O_WRONLY | O_CREAT, 0644);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS) << strerror(errno);
  if (fd >= 0) close(fd);
  errno = 0;
  EXPECT_EQ(mkdir(mount.Path("new-dir").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS) << strerror(errno);
  errno = 0;
  EXPECT_EQ(unlink(mount.Path("README").c_str()), -1);
  EXPECT_EQ(errno, EROFS) << strerror(errno);
  // Reading still works after the refused writes.
  EXPECT_THAT(ReadFile(mount.Path("etc/os-release")).value(), HasSubstr("imgfs test busybox"));
}

}  // namespace
}  // namespace imgfs::test
