// Several processes on one cache at once: two mounts and an `imgfs pull` of three images that
// share their two base layers start together on an empty cache, so they index, fetch and
// store the same blobs at the same time. Each mount reads every file; afterwards every file
// equals umoci's unpack, `imgfs cache verify` is clean (no lost unit, no half-written blob
// published), and the pulled image mounts with the registry out of reach. Everything is
// bounded by a deadline: a deadlock fails the test instead of hanging it.
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

constexpr auto kDeadline = std::chrono::seconds(180);

// Images "a", "b" and "c": two shared base layers (a static busybox binary as a large file,
// then small files), and a top layer of their own. Their umoci unpacks are in work/ref-<x>.
Status BuildSharedBaseImages(OciLayout& layout, const std::string& work,
                             const std::vector<std::string>& names) {
  auto umoci = UmociBinary();
  IMGFS_RETURN_IF_ERROR(umoci.status());
  IMGFS_RETURN_IF_ERROR(layout.NewImage("base"));
  IMGFS_RETURN_IF_ERROR(layout.Unpack("base", work + "/base1"));
  auto busybox = ReadFile("/bin/busybox");
  if (!busybox.ok())
    return Status::NotFound("/bin/busybox: install busybox-static (scripts/setup)");
  IMGFS_RETURN_IF_ERROR(MakeDirs(work + "/base1/rootfs/usr/bin"));
  IMGFS_RETURN_IF_ERROR(WriteFile(work + "/base1/rootfs/usr/bin/big", *busybox, 0755));
  IMGFS_RETURN_IF_ERROR(layout.Repack("base", work + "/base1"));
  IMGFS_RETURN_IF_ERROR(layout.Unpack("base", work + "/base2"));
  IMGFS_RETURN_IF_ERROR(MakeDirs(work + "/base2/rootfs/etc/conf.d"));
  for (int i = 0; i < 20; ++i) {
    IMGFS_RETURN_IF_ERROR(WriteFile(work + "/base2/rootfs/etc/conf.d/" + std::to_string(i),
                                    std::string(100 * (i + 1), static_cast<char>('a' + i))));
  }
  IMGFS_RETURN_IF_ERROR(layout.Repack("base", work + "/base2"));
  for (const std::string& name : names) {
    IMGFS_RETURN_IF_ERROR(RunOk({*umoci, "tag", "--image", layout.Ref("base"), name}));
    const std::string bundle = work + "/top-" + name;
    IMGFS_RETURN_IF_ERROR(layout.Unpack(name, bundle));
    IMGFS_RETURN_IF_ERROR(WriteFile(bundle + "/rootfs/etc/image", "image " + name + "\n"));
    IMGFS_RETURN_IF_ERROR(WriteFile(bundle + "/rootfs/etc/conf.d/3", "replaced in " + name));
    IMGFS_RETURN_IF_ERROR(layout.Repack(name, bundle));
    IMGFS_RETURN_IF_ERROR(layout.Unpack(name, work + "/ref-" + name));
  }
  return Status::Ok();
}

TEST(CacheConcurrencyTest, TwoMountsAndAPullOfOverlappingImagesShareOneCache) {
  Status s = CheckImgfsBinary();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  TempDir work("shared-base");
  auto layout = OciLayout::Init(work.Sub("layout"));
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  s = BuildSharedBaseImages(*layout, work.path(), {"a", "b", "c"});
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::map<std::string, std::string> image;
  for (const std::string name : {"a", "b", "c"}) {
    auto pushed = PushImage(*layout, name, (*registry)->host() + "/imgfs/shared-" + name + ":v1");
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  }
  auto proxy = BlobProxy::Start((*registry)->port());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  for (const std::string name : {"a", "b", "c"}) {
    image[name] = (*proxy)->host() + "/imgfs/shared-" + name + ":v1";
  }

  TempDir cache("cache");
  ImgfsMount mount_a(cache.path()), mount_b(cache.path());
  auto mount_and_read = [&](ImgfsMount* mount, const std::string& name) {
    RunResult m = mount->Mount(image[name]);
    if (!m.ok()) return "mount of " + name + ": " + m.Describe() + "\n" + mount->LogTail();
    TreeDiff diff = CompareTrees(work.Sub("ref-" + name + "/rootfs"), mount->path());
    if (!diff.empty()) return "mount of " + name + " differs: " + diff.ToString();
    if (diff.entries_compared < 25) return "mount of " + name + ": too few entries compared";
    return std::string();
  };
  auto pull = [&] {
    RunResult r = RunImgfs({"pull", "--cache", cache.path(), image["c"]});
    return r.ok() ? std::string() : "pull of c: " + r.Describe();
  };
  // All three start at once; each reports "" or what went wrong.
  std::vector<std::future<std::string>> jobs;
  jobs.push_back(std::async(std::launch::async, mount_and_read, &mount_a, "a"));
  jobs.push_back(std::async(std::launch::async, mount_and_read, &mount_b, "b"));
  jobs.push_back(std::async(std::launch::async, pull));
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  bool hung = false;
  for (auto& job : jobs) {
    if (job.wait_until(deadline) != std::future_status::ready) hung = true;
  }
  if (hung) {
    // Kill the daemons so that readers blocked on them return, then report.
    for (ImgfsMount* m : {&mount_a, &mount_b}) {
      for (pid_t pid : ImgfsProcessesFor(m->path())) ::kill(pid, SIGKILL);
    }
    ADD_FAILURE() << "two mounts and a pull did not finish within "
                  << std::chrono::duration_cast<std::chrono::seconds>(kDeadline).count()
                  << " s: a deadlock?\nmount a log:\n"
                  << mount_a.LogTail();
  }
  for (auto& job : jobs) {
    std::string problem = job.get();
    EXPECT_EQ(problem, "");
  }
  ASSERT_FALSE(hung);
  mount_a.Unmount();
  mount_b.Unmount();
  EXPECT_EQ(mount_a.forced_cleanup(), "");
  EXPECT_EQ(mount_b.forced_cleanup(), "");

  RunResult verify = RunImgfs({"cache", "verify", "--cache", cache.path()});
  EXPECT_TRUE(verify.ok()) << verify.Describe();
  EXPECT_THAT(verify.out, HasSubstr(": all good\n"));

  // What the pull left is complete: c mounts and reads right with the registry out of reach.
  proxy->reset();
  ImgfsMount mount_c(cache.path());
  RunResult m = mount_c.Mount(image["c"]);
  ASSERT_TRUE(m.ok()) << m.Describe() << "\n" << mount_c.LogTail();
  TreeDiff diff = CompareTrees(work.Sub("ref-c/rootfs"), mount_c.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString() << mount_c.LogTail();
}

}  // namespace
}  // namespace imgfs::test
