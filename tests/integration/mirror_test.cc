// Mirrors and the config files, against real parts: docker-registry in proxy mode
// (distribution's pull-through cache, `proxy: remoteurl:`) as the configured mirror of the
// test registry, for a gzip image and for an eStargz one read lazily (counted at a BlobProxy
// between imgfs and the mirror), and `imgfs info` reading a config.toml, a registries.conf
// and its drop-ins.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>

#include "tests/support/blob_proxy.h"
#include "tests/support/containerd.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// Access-log lines of imgfs's own requests for blobs: its User-Agent, quoted in the log's
// combined format ("imgfs/0.1"; the repositories are named imgfs/... too).
size_t ImgfsBlobRequests(const RegistryServer& registry) {
  size_t n = 0;
  for (const std::string& line : registry.AccessLogLines("/blobs/sha256:")) {
    n += line.find("\"imgfs/") != std::string::npos;
  }
  return n;
}

// $IMGFS_CONFIG set for the scope of a test; imgfs processes it starts inherit it.
class ScopedConfig {
 public:
  explicit ScopedConfig(const std::string& path) { ::setenv("IMGFS_CONFIG", path.c_str(), 1); }
  ~ScopedConfig() { ::unsetenv("IMGFS_CONFIG"); }
};

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Status s = CheckImgfsBinary();
    ASSERT_TRUE(s.ok()) << s.ToString();
    auto pushed = TestWorld::Get().Pushed("layered", ManifestFormat::kOci);
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    image_ = *pushed;
    auto upstream = TestWorld::Get().Registry();
    ASSERT_TRUE(upstream.ok()) << upstream.status().ToString();
    upstream_ = *upstream;
    RegistryOptions mirror;
    mirror.proxy_remote_url = upstream_->url();
    auto created = RegistryServer::Create(mirror);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    mirror_ = std::move(*created);
    // The mirror is configured the way a user would: in imgfs's config file.
    ASSERT_TRUE(WriteFile(dir_.Sub("config.toml"),
                          "[[registry]]\nlocation = \"" + upstream_->host() +
                              "\"\n[[registry.mirror]]\nlocation = \"" + mirror_->host() + "\"\n")
                    .ok());
  }

  PushedImage image_;
  RegistryServer* upstream_ = nullptr;
  std::unique_ptr<RegistryServer> mirror_;
  TempDir dir_{"mirror"};
};

TEST_F(MirrorTest, ColdMountReadsEverythingThroughThePullThroughMirrorThenFallsBack) {
  ScopedConfig config(dir_.Sub("config.toml"));
  const size_t upstream_before = ImgfsBlobRequests(*upstream_);
  {
    TempDir cache("cache");
    ImgfsMount mount(cache.path());
    RunResult r = mount.Mount(image_.ByTag(), {"--prefetch", "none"});
    ASSERT_TRUE(r.ok()) << r.Describe();
    TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), mount.path());
    EXPECT_TRUE(diff.empty()) << diff.ToString();
    EXPECT_GE(diff.entries_compared, 4u);
    mount.Unmount();
  }
  // Every blob imgfs read came through the mirror, which fetched it from the upstream.
  std::vector<std::string> via_mirror = mirror_->AccessLogLines("/blobs/sha256:");
  EXPECT_GE(ImgfsBlobRequests(*mirror_), 1u);
  EXPECT_EQ(ImgfsBlobRequests(*upstream_), upstream_before)
      << "imgfs went to the upstream although the mirror was up";
  bool whole_blob_answer = false;
  for (const std::string& line : via_mirror)
    whole_blob_answer |= line.find("\" 200 ") != std::string::npos;
  EXPECT_TRUE(whole_blob_answer) << "the cold pull-through cache answered no blob request with 200";
  EXPECT_FALSE(upstream_->AccessLogLines("Go-http-client").empty())
      << "the mirror never asked the upstream";

  // The mirror goes away: the next mount (a fresh cache) falls back to the upstream and says so.
  mirror_->Stop();
  TempDir cache("cache");
  ImgfsMount mount(cache.path());
  RunResult r = mount.Mount(image_.ByTag(), {"--prefetch", "none"});
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("mirror " + mirror_->host() + " failed"));
  EXPECT_THAT(r.err, HasSubstr("falling back to registry " + upstream_->host()));
  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString();
  EXPECT_GT(ImgfsBlobRequests(*upstream_), upstream_before);
  mount.Unmount();
}

// The pull-through cache answers the first range requests for a blob it does not hold with
// 200 and the whole blob. An eStargz image is still read lazily through it: every file right,
// and no blob sent by the mirror more than once in all.
TEST_F(MirrorTest, EstargzImageReadLazilyThroughTheColdPullThroughMirror) {
  TempDir work("estargz-image");
  auto layout = OciLayout::Init(work.Sub("layout"));
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_TRUE(BuildTwoLayerImage(*layout, "two", work.path()).ok());
  ASSERT_TRUE(layout->Unpack("two", work.Sub("reference")).ok());
  const std::string source = upstream_->host() + "/imgfs/mirror-two:oci";
  const std::string image = upstream_->host() + "/imgfs/mirror-two:estargz";
  ASSERT_TRUE(PushImage(*layout, "two", source).ok());
  {
    PrivateContainerd containerd;
    Status s = containerd.Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = containerd.ConvertAndPush(source, "estargz", image);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  auto manifest = FetchManifest(upstream_->host(), "imgfs/mirror-two", "estargz");
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  ASSERT_EQ(manifest->layers.size(), 2u) << manifest->body;
  for (const ManifestLayer& layer : manifest->layers) {
    ASSERT_TRUE(layer.annotations.count(kEstargzTocDigestAnnotation)) << manifest->body;
    ASSERT_GT(layer.size, uint64_t{1} << 20) << "a layer the mount's tail read would cover";
  }
  // imgfs -> counting proxy -> the (cold) mirror -> the upstream.
  auto counter = BlobProxy::Start(mirror_->port());
  ASSERT_TRUE(counter.ok()) << counter.status().ToString();
  const std::string config = dir_.Sub("counted.toml");
  ASSERT_TRUE(WriteFile(config, "[[registry]]\nlocation = \"" + upstream_->host() +
                                    "\"\n[[registry.mirror]]\nlocation = \"" + (*counter)->host() +
                                    "\"\n")
                  .ok());
  ScopedConfig scoped(config);
  TempDir cache("cache");
  ImgfsMount mount(cache.path());
  RunResult r = mount.Mount(image, {"--prefetch", "none"});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  TreeDiff diff = CompareTrees(work.Sub("reference") + "/rootfs", mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << "daemon log:\n" << mount.LogTail();
  EXPECT_GE(diff.entries_compared, 2u + 2 * kTwoLayerFilesPerLayer);
  auto requests = (*counter)->Requests();
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  bool whole_blob_answer = false;
  for (const ProxiedRequest& q : *requests) {
    whole_blob_answer |= q.IsBlobBody() && q.status == 200 && !q.range.empty();
  }
  EXPECT_TRUE(whole_blob_answer) << "the cold mirror answered no range with the whole blob:\n"
                                 << (*counter)->Describe();
  for (const ManifestLayer& layer : manifest->layers) {
    EXPECT_LE(BlobBytes(*requests, layer.digest), layer.size)
        << "blob " << layer.digest << " of " << layer.size << " bytes came from the mirror more "
        << "than once:\n"
        << (*counter)->Describe();
  }
  mount.Unmount();
}

TEST_F(MirrorTest, InfoNamesWhereEachValueCameFrom) {
  const std::string config = dir_.Sub("info.toml");
  const std::string registries = dir_.Sub("registries.conf");
  ASSERT_TRUE(
      WriteFile(config, "[cache]\nmax_size = \"3GiB\"\n\n[pull]\npolicy = \"always\"\n").ok());
  ASSERT_TRUE(WriteFile(registries,
                        "unqualified-search-registries = [\"docker.io\"]\n[[registry]]\n"
                        "location = \"10.20.30.40:5000\"\ninsecure = true\n"
                        "[[registry.mirror]]\nlocation = \"10.20.30.41:5000\"\n")
                  .ok());
  // A drop-in beside it (containers-registries.conf.d(5)), shown with its own file.
  const std::string drop_in = dir_.MakeDir("registries.conf.d") + "/50-site.conf";
  ASSERT_TRUE(WriteFile(drop_in,
                        "[[registry]]\nlocation = \"10.20.30.50:5000\"\n"
                        "[[registry.mirror]]\nlocation = \"10.20.30.51:5000\"\n")
                  .ok());
  RunResult r = RunImgfs({"info", "--platform", "linux/arm64"}, "",
                         {{"IMGFS_CONFIG", config}, {"CONTAINERS_REGISTRIES_CONF", registries}});
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_THAT(r.out, HasSubstr(config + ": read"));
  EXPECT_THAT(r.out, HasSubstr("max_size: 3221225472 bytes  (" + config + ":2)"));
  EXPECT_THAT(r.out, HasSubstr("policy: always  (" + config + ":5)"));
  EXPECT_THAT(r.out, HasSubstr("platform: linux/arm64  (flag --platform)"));
  EXPECT_THAT(r.out, HasSubstr("stall_timeout: 30 s  (default)"));
  EXPECT_THAT(r.out, HasSubstr("mirror: https://10.20.30.41:5000  (" + registries + ":5)"));
  EXPECT_THAT(r.out, HasSubstr("insecure: true  (" + registries + ":4)"));
  EXPECT_THAT(r.out, HasSubstr(drop_in + ": read"));
  EXPECT_THAT(r.out, HasSubstr("mirror: https://10.20.30.51:5000  (" + drop_in + ":3)"));

  // A mistake in the file stops every command, naming the file and line.
  ASSERT_TRUE(WriteFile(config, "[pull]\npolicy = \"always\"\nplatfrom = \"linux/arm64\"\n").ok());
  r = RunImgfs({"info"}, "", {{"IMGFS_CONFIG", config}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(config + ":3: unknown key 'pull.platfrom'"));
  r = RunImgfs({"mount", image_.ByTag(), dir_.path()}, "", {{"IMGFS_CONFIG", config}});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr(config + ":3: unknown key 'pull.platfrom'"));
}

}  // namespace
}  // namespace imgfs::test
