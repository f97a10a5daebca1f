// Faults of the machine rather than of the registry: the daemon killed (SIGKILL) in the middle
// of its work, and the disk under the cache filling up. Afterwards the cache must hold nothing
// wrong: `imgfs umount` clears a dead mount point, and the next mount works and reads the
// image's bytes (compared with umoci's unpack of it).
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/proxied_image_test.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// A tmpfs of `bytes` mounted on a fresh directory, unmounted by the destructor.
class SmallDisk {
 public:
  explicit SmallDisk(uint64_t bytes) {
    RunResult r = RunCommand(
        {"mount", "-t", "tmpfs", "-o", "size=" + std::to_string(bytes), "tmpfs", dir_.path()});
    error_ = r.ok() ? "" : "cannot mount a tmpfs (the tests run as root): " + r.Describe();
  }
  ~SmallDisk() { RunCommand({"umount", "-l", dir_.path()}); }
  Status Resize(uint64_t bytes) {
    return RunOk({"mount", "-o", "remount,size=" + std::to_string(bytes), dir_.path()});
  }
  const std::string& error() const { return error_; }
  std::string Sub(const std::string& name) const { return dir_.Sub(name); }

 private:
  TempDir dir_{"disk"};
  std::string error_;
};

// The busybox image behind the proxy (tests/support/proxied_image_test.h).
using FaultsTest = ProxiedImageTest;

TEST_F(FaultsTest, DaemonKilledDuringTheLayerFetchLeavesTheCacheConsistent) {
  // The registry sends half the layer and then nothing: the daemon is in the middle of
  // writing the blob into the cache when it is killed.
  ASSERT_TRUE(proxy_->SetFault(layer_.digest, BlobProxy::Fault::kStall, layer_.size / 2).ok());
  ImgfsMount mount(cache_.path());
  TempDir logs("logs");
  BackgroundProcess command;
  ASSERT_TRUE(command
                  .Start({ImgfsBinary(), "mount", "--cache", cache_.path(), "--stall-timeout",
                          "600", Proxied(), mount.path()},
                         logs.Sub("out"), logs.Sub("err"),
                         {{"DOCKER_CONFIG", mount.docker_config()}})
                  .ok());
  ASSERT_TRUE(proxy_->WaitForStall(60)) << proxy_->Describe();
  std::vector<pid_t> pids = ImgfsProcessesFor(mount.path());
  pids.erase(std::remove(pids.begin(), pids.end(), command.pid()), pids.end());
  ASSERT_EQ(pids.size(), 1u) << "the daemon of the mount";
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return !command.running(); }, 10))
      << "imgfs mount did not return after its daemon was killed";
  auto err = ReadFile(logs.Sub("err"));
  EXPECT_THAT(err.ok() ? *err : "", HasSubstr("ended before the mount was ready"));
  EXPECT_FALSE(mount.mounted());
  ExpectMountsAndReadsRight(mount);
}

TEST_F(FaultsTest, UmountClearsTheMountPointOfAKilledDaemon) {
  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(Proxied());
  ASSERT_TRUE(r.ok()) << r.Describe();
  // A file held open keeps the mount busy: a plain unmount of the dead mount fails (EBUSY).
  int fd = ::open(mount.Path("bin/busybox").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  std::vector<pid_t> pids = ImgfsProcessesFor(mount.path());
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  ASSERT_TRUE(WaitUntil([&] { return ImgfsProcessesFor(mount.path()).empty(); }, 10));
  struct statfs fs;
  ASSERT_NE(::statfs(mount.path().c_str(), &fs), 0);
  ASSERT_TRUE(errno == ENOTCONN || errno == ECONNABORTED)
      << "a FUSE mount without its daemon: " << std::strerror(errno);

  RunResult u = RunImgfs({"umount", mount.path()});
  EXPECT_TRUE(u.ok()) << u.Describe();
  EXPECT_FALSE(mount.mounted());
  EXPECT_EQ(::statfs(mount.path().c_str(), &fs), 0) << std::strerror(errno);
  ::close(fd);
  ExpectMountsAndReadsRight(mount);
}

TEST_F(FaultsTest, FullDiskWhileStoringTheLayerFailsCleanly) {
  // A cache on a disk with room for the metadata but not for the layer blob.
  SmallDisk disk(std::max<uint64_t>(layer_.size / 2, 64 << 10) & ~uint64_t{4095});
  ASSERT_EQ(disk.error(), "");
  const std::string cache = disk.Sub("cache");
  ImgfsMount full(cache);
  RunResult r = full.Mount(Proxied());
  EXPECT_FALSE(r.ok()) << r.Describe();
  EXPECT_THAT(r.err, HasSubstr("No space left on device"));
  EXPECT_FALSE(full.mounted());
  EXPECT_TRUE(ImgfsProcessesFor(full.path()).empty());

  // With room again, the same cache mounts the image and reads it right.
  ASSERT_TRUE(disk.Resize(256 << 20).ok());
  ImgfsMount mount(cache);
  ExpectMountsAndReadsRight(mount);
}

}  // namespace
}  // namespace imgfs::test
