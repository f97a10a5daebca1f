// ServeFuse on a real kernel mount of a small hand-built image: what stat, readdir, read,
// readlink, xattrs, hard links and write attempts look like through the kernel.
//
// Needs /dev/fuse and the right to mount (tests run as root; see scripts/setup).
#include "fs/fuse/fuse_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "fs/tree/image_layers.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"

namespace imgfs::fs {
namespace {

using ::testing::ElementsAre;

Entry MakeEntry(std::string path, EntryType type, uint32_t mode) {
  Entry e;
  e.path = std::move(path);
  e.type = type;
  e.mode = mode;
  e.mtime_sec = 1600000000;
  e.mtime_nsec = 500;
  return e;
}

class FuseFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access("/dev/fuse", R_OK | W_OK), 0)
        << "/dev/fuse is missing or not usable: run scripts/setup (and load the fuse module)";

    // One blob of two raw units: "hello.txt" is unit 0; "big.bin" spans units 0 and 1 and
    // "bad.bin" is unit 2, whose recorded digest is wrong.
    std::mt19937 rng(7);
    std::string blob = "hello, imgfs\n";
    hello_ = blob;
    std::string big(200000, '\0');
    for (char& c : big) c = static_cast<char>(rng());
    blob += big;
    blob += "corrupt!";
    auto layer = std::make_shared<LayerIndex>();
    layer->blob_digest = Sha256Digest(blob);
    layer->format = "tar";
    layer->blob_size = blob.size();
    auto add_unit = [&](uint64_t coff, uint64_t len, std::string sha) {
      Unit u;
      u.coff = coff;
      u.clen = u.ulen = len;
      u.sha256 = std::move(sha);
      layer->units.push_back(u);
    };
    const uint64_t half = 13 + 100000;
    add_unit(0, half, Sha256Digest(std::string_view(blob).substr(0, half)));
    add_unit(half, 100000, Sha256Digest(std::string_view(blob).substr(half, 100000)));
    add_unit(half + 100000, 8, Sha256Digest("something else"));
    big_ = big;

    Entry root = MakeEntry("", EntryType::kDirectory, 0755);
    Entry etc = MakeEntry("etc", EntryType::kDirectory, 0755);
    Entry hello = MakeEntry("etc/hello.txt", EntryType::kRegular, 0644);
    hello.uid = 1000;
    hello.gid = 100;
    hello.size = 13;
    hello.chunks = {{0, 13, 0, 0}};
    hello.xattrs = {{"user.greeting", "hi"}, {"user.empty", ""}};
    Entry big_file = MakeEntry("data/big.bin", EntryType::kRegular, 0600);
    big_file.size = 200000;
    big_file.chunks = {{0, 100000, 0, 13}, {100000, 100000, 1, 0}};
    Entry bad = MakeEntry("data/bad.bin", EntryType::kRegular, 0644);
    bad.size = 8;
    bad.chunks = {{0, 8, 2, 0}};
    Entry link = MakeEntry("etc/link", EntryType::kSymlink, 0777);
    link.link_target = "hello.txt";
    Entry hard = MakeEntry("etc/hard", EntryType::kHardlink, 0);
    hard.link_target = "etc/hello.txt";
    Entry null_dev = MakeEntry("dev/null", EntryType::kCharDevice, 0666);
    null_dev.dev_major = 1;
    null_dev.dev_minor = 3;
    Entry fifo = MakeEntry("run/fifo", EntryType::kFifo, 0600);
    layer->entries = {root, etc, hello, big_file, bad, link, hard, null_dev, fifo};
    for (int i = 0; i < 300; ++i) {  // more names than one readdir buffer holds
      layer->entries.push_back(
          MakeEntry("many/f" + std::to_string(1000 + i), EntryType::kRegular, 0644));
    }
    std::shared_ptr<const LayerIndex> lower = layer;
    auto upper = std::make_shared<LayerIndex>();
    upper->blob_digest = "sha256:" + std::string(64, 'a');
    upper->format = "tar";
    Entry wh;
    wh.path = "many/f1000";
    wh.whiteout = true;
    upper->entries = {wh};

    source_ = std::make_unique<test::FakeBlobSource>(blob, test::FakeBlobSource::Serve::kAnyDigest);
    Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir_.Sub("cache"));
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    cache_ = std::move(cache).value();
    Result<std::unique_ptr<Tree>> tree = Tree::Build({lower, upper});
    ASSERT_TRUE(tree.ok()) << tree.status().ToString();
    tree_ = std::move(tree).value();
    reader_ = std::make_unique<ContentReader>(std::make_shared<const ImageLayers>(tree_->layers()),
                                              cache_.get(), source_.get());

    mnt_ = dir_.MakeDir("mnt");
    std::future<Status> ready_future = ready_.get_future();
    serving_ = std::thread([this] {
      FuseOptions options;
      options.mountpoint = mnt_;
      options.fsname = "imgfs:test/image,with-comma";
      Status s = ServeFuse(*tree_, *reader_, options, [&] {
        std::call_once(ready_once_, [&] { ready_.set_value(Status::Ok()); });
      });
      served_ = s;
      std::call_once(ready_once_, [&] {
        ready_.set_value(s.ok() ? Status::Internal("ServeFuse returned before the mount") : s);
      });
    });
    ASSERT_EQ(ready_future.wait_for(std::chrono::seconds(20)), std::future_status::ready)
        << "the FUSE mount did not come up";
    Status s = ready_future.get();
    ASSERT_TRUE(s.ok()) << s.ToString();
    mounted_ = true;
  }

  void TearDown() override {
    if (mounted_) {
      // Detach even if something still holds the mount: a failed test must not leave a stale
      // mount behind. The kernel then ends the session and ServeFuse returns.
      EXPECT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0) << strerror(errno);
    }
    if (serving_.joinable()) serving_.join();
    if (mounted_) {
      EXPECT_TRUE(served_.ok()) << served_.ToString();
      EXPECT_FALSE(test::IsMountPoint(mnt_));
    }
  }

  std::string P(const std::string& rel) const { return mnt_ + "/" + rel; }

  struct stat Stat(const std::string& rel) {
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    EXPECT_EQ(lstat(P(rel).c_str(), &st), 0) << rel << ": " << strerror(errno);
    return st;
  }

  std::string ReadAll(const std::string& rel) {
    Result<std::string> data = test::ReadFile(P(rel));
    EXPECT_TRUE(data.ok()) << rel << ": " << data.status().ToString();
    return data.ok() ? *data : "";
  }

  std::vector<std::string> List(const std::string& rel) {
    std::vector<std::string> names;
    DIR* d = opendir(P(rel).c_str());
    EXPECT_NE(d, nullptr) << rel << ": " << strerror(errno);
    if (!d) return names;
    while (dirent* e = readdir(d)) names.emplace_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    return names;
  }

  test::TempDir dir_{"fuse"};
  std::string hello_, big_;
  std::unique_ptr<test::FakeBlobSource> source_;
  std::unique_ptr<cache::Cache> cache_;
  std::unique_ptr<Tree> tree_;
  std::unique_ptr<ContentReader> reader_;
  std::string mnt_;
  std::promise<Status> ready_;  // set once: mounted, or ServeFuse's early error
  std::once_flag ready_once_;
  std::thread serving_;
  Status served_;
  bool mounted_ = false;
};

TEST_F(FuseFsTest, StatShowsTheImageAttributes) {
  struct stat st = Stat("etc/hello.txt");
  EXPECT_EQ(st.st_mode, S_IFREG | 0644u);
  EXPECT_EQ(st.st_size, 13);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 100u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 500);
  EXPECT_EQ(st.st_blocks, 1);
  EXPECT_EQ(st.st_nlink, 2u);  // hello.txt and hard

  EXPECT_EQ(Stat("data/big.bin").st_blocks, (200000 + 511) / 512);
  EXPECT_EQ(Stat("etc").st_mode, S_IFDIR | 0755u);
  EXPECT_EQ(Stat("").st_ino, 1u);
  struct stat dev = Stat("dev/null");
  EXPECT_TRUE(S_ISCHR(dev.st_mode));
  EXPECT_EQ(dev.st_rdev, makedev(1, 3));
  EXPECT_TRUE(S_ISFIFO(Stat("run/fifo").st_mode));
  struct stat lnk = Stat("etc/link");
  EXPECT_TRUE(S_ISLNK(lnk.st_mode));
  EXPECT_EQ(lnk.st_size, 9);

  struct stat missing;
  EXPECT_EQ(lstat(P("etc/nope").c_str(), &missing), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(FuseFsTest, HardLinkedNamesShareTheInode) {
  EXPECT_EQ(Stat("etc/hard").st_ino, Stat("etc/hello.txt").st_ino);
  EXPECT_EQ(ReadAll("etc/hard"), hello_);
}

TEST_F(FuseFsTest, ReaddirListsMergedEntries) {
  EXPECT_THAT(List("etc"), ElementsAre(".", "..", "hard", "hello.txt", "link"));
  EXPECT_THAT(List(""), ElementsAre(".", "..", "data", "dev", "etc", "many", "run"));
  std::vector<std::string> many = List("many");
  EXPECT_EQ(many.size(), 2u + 299u);  // f1000 was whited out by the upper layer
  EXPECT_EQ(std::count(many.begin(), many.end(), "f1000"), 0);
  EXPECT_EQ(std::count(many.begin(), many.end(), "f1299"), 1);
}

TEST_F(FuseFsTest, ReadReturnsVerifiedBytes) {
  EXPECT_EQ(ReadAll("etc/hello.txt"), hello_);
  EXPECT_EQ(ReadAll("data/big.bin"), big_);
  int fd = open(P("data/big.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string buf(5000, '\0');
  ssize_t n = pread(fd, buf.data(), buf.size(), 98000);  // across the unit boundary
  EXPECT_EQ(n, 5000);
  EXPECT_EQ(buf, big_.substr(98000, 5000));
  n = pread(fd, buf.data(), buf.size(), 199000);  // short read at the end
  EXPECT_EQ(n, 1000);
  n = pread(fd, buf.data(), buf.size(), 300000);
  EXPECT_EQ(n, 0);
  close(fd);
}

TEST_F(FuseFsTest, UnverifiableBytesAreEio) {
  int fd = open(P("data/bad.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[8];
  EXPECT_EQ(read(fd, buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, EIO);
  close(fd);
}

TEST_F(FuseFsTest, ReadlinkGivesTheTarget) {
  char buf[64];
  ssize_t n = readlink(P("etc/link").c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 9) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "hello.txt");
}

TEST_F(FuseFsTest, XattrsFollowTheSizeProbeProtocol) {
  std::string path = P("etc/hello.txt");
  EXPECT_EQ(getxattr(path.c_str(), "user.greeting", nullptr, 0), 2);
  char buf[16];
  ASSERT_EQ(getxattr(path.c_str(), "user.greeting", buf, sizeof(buf)), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  EXPECT_EQ(getxattr(path.c_str(), "user.greeting", buf, 1), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(getxattr(path.c_str(), "user.empty", buf, sizeof(buf)), 0);
  EXPECT_EQ(getxattr(path.c_str(), "user.none", buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, ENODATA);

  ssize_t need = listxattr(path.c_str(), nullptr, 0);
  ASSERT_EQ(need, static_cast<ssize_t>(sizeof("user.greeting") + sizeof("user.empty")));
  std::string list(need, '\0');
  ASSERT_EQ(listxattr(path.c_str(), list.data(), list.size()), need);
  EXPECT_EQ(list, std::string("user.greeting\0user.empty\0", need));
  EXPECT_EQ(listxattr(path.c_str(), list.data(), 3), -1);
  EXPECT_EQ(errno, ERANGE);
}

TEST_F(FuseFsTest, WritesAreRefusedWithErofs) {
  EXPECT_EQ(open(P("etc/hello.txt").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(P("etc/hello.txt").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(P("etc/new").c_str(), O_WRONLY | O_CREAT, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(mkdir(P("newdir").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(unlink(P("etc/hello.txt").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(chmod(P("etc/hello.txt").c_str(), 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(setxattr(P("etc/hello.txt").c_str(), "user.x", "1", 1, 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(access(P("etc/hello.txt").c_str(), W_OK), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(access(P("etc/hello.txt").c_str(), R_OK), 0);
}

TEST_F(FuseFsTest, StatfsAndMountTableDescribeTheImage) {
  struct statvfs sv;
  ASSERT_EQ(statvfs(mnt_.c_str(), &sv), 0) << strerror(errno);
  EXPECT_EQ(sv.f_files, tree_->inode_count());
  EXPECT_EQ(sv.f_blocks, (tree_->stats().total_file_bytes + 4095) / 4096);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);

  Result<std::string> mounts = test::ReadFile("/proc/self/mounts");
  ASSERT_TRUE(mounts.ok());
  size_t at = mounts->find(" " + mnt_ + " ");
  ASSERT_NE(at, std::string::npos) << *mounts;
  size_t line_start = mounts->rfind('\n', at) + 1;
  std::string line = mounts->substr(line_start, mounts->find('\n', at) - line_start);
  EXPECT_NE(line.find("imgfs:test/image,with-comma"), std::string::npos) << line;
  EXPECT_NE(line.find("fuse.imgfs"), std::string::npos) << line;
  EXPECT_NE(line.find(" ro,"), std::string::npos) << line;

  // Readahead grown past the kernel's 128 KiB default for FUSE.
  struct stat st = Stat("");
  std::string bdi = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                    std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
  Result<std::string> ra = test::ReadFile(bdi);
  ASSERT_TRUE(ra.ok()) << ra.status().ToString();
  EXPECT_EQ(std::stoi(*ra), kMountReadaheadKb) << bdi;
}

TEST_F(FuseFsTest, UserOptionsCannotMakeTheMountWritable) {
  // Tear down the fixture's mount and mount again with "rw" asked for.
  ASSERT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0);
  serving_.join();
  mounted_ = false;
  std::promise<void> ready;
  std::thread t([&] {
    FuseOptions options;
    options.mountpoint = mnt_;
    options.fuse_args = {"rw"};
    Status s = ServeFuse(*tree_, *reader_, options, [&] { ready.set_value(); });
    EXPECT_TRUE(s.ok()) << s.ToString();
  });
  ASSERT_EQ(ready.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready);
  struct statvfs sv;
  EXPECT_EQ(statvfs(mnt_.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);
  EXPECT_EQ(open(P("etc/hello.txt").c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0);
  t.join();
  EXPECT_FALSE(test::IsMountPoint(mnt_));
}

// The way `imgfs mount` ends when killed: the loop stops, the mount goes, ServeFuse returns OK.
// A mount of no layers: an empty root, nothing to read.
std::shared_ptr<const ImageLayers> NoLayers() {
  return std::make_shared<const ImageLayers>(std::vector<std::shared_ptr<const LayerIndex>>{});
}

TEST(FuseSignalTest, SigtermUnmountsAndReturns) {
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    test::TempDir dir("fuse-signal");
    std::string mnt = dir.MakeDir("mnt");
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      // libfuse leaves an ignored signal ignored, as a background job (`scripts/test &`)
      // inherits SIGINT: what is tested is the daemon's own handling of each.
      for (int s : {SIGTERM, SIGINT, SIGHUP}) signal(s, SIG_DFL);
      Result<std::unique_ptr<Tree>> tree = Tree::Build({});
      ContentReader reader(NoLayers(), nullptr, nullptr);
      FuseOptions options;
      options.mountpoint = mnt;
      Status s = ServeFuse(**tree, reader, options, [] {});
      _exit(s.ok() ? 0 : 3);
    }
    bool up = false;
    for (int i = 0; i < 200 && !up; ++i) {
      up = test::IsMountPoint(mnt);
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_TRUE(up) << "the mount never came up";
    ASSERT_EQ(kill(child, sig), 0);
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 200 && !exited; ++i) {
      exited = waitpid(child, &status, WNOHANG) == child;
      if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!exited) {
      umount2(mnt.c_str(), MNT_DETACH);
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      FAIL() << "ServeFuse did not return after signal " << sig;
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    EXPECT_FALSE(test::IsMountPoint(mnt));
    if (test::IsMountPoint(mnt)) umount2(mnt.c_str(), MNT_DETACH);
  }
}

TEST(FuseSignalTest, StaleMountIsReportedClearly) {
  test::TempDir dir("fuse-stale");
  std::string mnt = dir.MakeDir("mnt");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Result<std::unique_ptr<Tree>> tree = Tree::Build({});
    ContentReader reader(NoLayers(), nullptr, nullptr);
    FuseOptions options;
    options.mountpoint = mnt;
    (void)ServeFuse(**tree, reader, options, [] {});
    _exit(0);
  }
  for (int i = 0; i < 200 && !test::IsMountPoint(mnt); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(test::IsMountPoint(mnt)) << "the mount never came up";
  kill(child, SIGKILL);  // the server dies without unmounting
  int status;
  waitpid(child, &status, 0);

  Result<std::unique_ptr<Tree>> tree = Tree::Build({});
  ContentReader reader(NoLayers(), nullptr, nullptr);
  FuseOptions options;
  options.mountpoint = mnt;
  Status s = ServeFuse(**tree, reader, options,
                       [] { ADD_FAILURE() << "mounted over a stale mount"; });
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("stale"), std::string::npos) << s.ToString();
  EXPECT_EQ(umount2(mnt.c_str(), MNT_DETACH), 0) << strerror(errno);
  EXPECT_FALSE(test::IsMountPoint(mnt));
}

}  // namespace
}  // namespace imgfs::fs
