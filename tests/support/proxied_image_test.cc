#include "tests/support/proxied_image_test.h"

#include <utility>

#include "tests/support/process.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {

void ProxiedRegistryTest::SetUp() {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto started = StartProxiedRegistry();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  registry_ = std::move(started->registry);
  proxy_ = std::move(started->proxy);
}

void ProxiedImageTest::SetUp() {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto pushed = TestWorld::Get().Pushed("busybox", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  image_ = *pushed;
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  registry_ = *registry;
  auto proxy = BlobProxy::Start(registry_->port());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  proxy_ = std::move(*proxy);
  auto manifest = FetchManifest(image_.host, image_.repo, image_.tag);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  ASSERT_FALSE(manifest->layers.empty());
  manifest_ = *manifest;
  layer_ = manifest_.layers.front();
}

std::string ProxiedImageTest::Proxied(const PushedImage& image) const {
  return proxy_->host() + "/" + image.repo + ":" + image.tag;
}

void ProxiedImageTest::ExpectMountsAndReadsRight(ImgfsMount& mount) {
  ASSERT_TRUE(proxy_->ClearFaults().ok());
  RunResult r = mount.Mount(Proxied());
  ASSERT_TRUE(r.ok()) << r.Describe() << "\ndaemon log:\n" << mount.LogTail();
  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("busybox"), mount.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString();
  EXPECT_GE(diff.entries_compared, 4u);
  mount.Unmount();
  EXPECT_EQ(mount.forced_cleanup(), "");
}

}  // namespace imgfs::test
