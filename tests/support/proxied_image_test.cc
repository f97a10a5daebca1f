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

Result<ProxiedImage> StartProxiedImage() {
  ProxiedImage p;
  IMGFS_ASSIGN_OR_RETURN(p.image, TestWorld::Get().Pushed("busybox", ManifestFormat::kOci));
  IMGFS_ASSIGN_OR_RETURN(p.registry, TestWorld::Get().Registry());
  IMGFS_ASSIGN_OR_RETURN(p.proxy, BlobProxy::Start(p.registry->port()));
  IMGFS_ASSIGN_OR_RETURN(p.manifest, FetchManifest(p.image.host, p.image.repo, p.image.tag));
  if (p.manifest.layers.empty()) {
    return Status::Internal("the busybox test image's manifest lists no layers");
  }
  return p;
}

void ProxiedImageTest::SetUp() {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto started = StartProxiedImage();
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  image_ = started->image;
  registry_ = started->registry;
  proxy_ = std::move(started->proxy);
  manifest_ = std::move(started->manifest);
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
