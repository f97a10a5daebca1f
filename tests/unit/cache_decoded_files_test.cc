// Decoded files (cache/decoded_files.h): written whole or not at all, found by blob and path
// with the right size only, counted and dropped with their blob, trimmed first by gc, and
// checked by verify against the digest written beside them.
#include "cache/decoded_files.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/eviction.h"
#include "cache/verify.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"
#include "tests/support/temp_cache.h"
#include "tests/support/test_blobs.h"

namespace imgfs::cache {
namespace {

constexpr const char* kPath = "usr/lib/big.so";

class DecodedFilesTest : public test::TempCacheTest {
 protected:
  DecodedFilesTest()
      : source_(test::RandomBytes(256 << 10, 5)), bytes_(test::RandomBytes(3 << 20, 6)) {}

  // Feeds `bytes` in 1 MiB pieces.
  static DecodedFiles::Fill FillWith(const std::string& bytes) {
    return [bytes](const std::function<Status(std::string_view)>& sink) -> Status {
      for (size_t at = 0; at < bytes.size(); at += 1 << 20) {
        IMGFS_RETURN_IF_ERROR(sink(std::string_view(bytes).substr(at, 1 << 20)));
      }
      return Status::Ok();
    };
  }

  Status Put() {
    Result<bool> written = cache_->PutDecodedFile(source_.digest(), kPath, bytes_.size(),
                                                  FillWith(bytes_));
    if (!written.ok()) return written.status();
    return *written ? Status::Ok() : Status::Internal("not written");
  }

  std::string FilePath() const {
    return DecodedFiles(root_).DirOf(DigestHex(source_.digest())) + "/" +
           DecodedFiles::NameOf(kPath);
  }

  // Entries of the blob's directory of decoded files (temporary ones included).
  std::vector<std::string> DirEntries() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(
             DecodedFiles(root_).DirOf(DigestHex(source_.digest())), ec)) {
      out.push_back(e.path().filename().string());
    }
    return out;
  }

  test::FakeBlobSource source_;
  const std::string bytes_;
};

TEST_F(DecodedFilesTest, AWrittenFileOpensWithItsBytesAndDigest) {
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
  ASSERT_TRUE(Put().ok());
  Result<int> fd = cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size());
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  std::string got(bytes_.size() + 1, '\0');
  EXPECT_EQ(::pread(*fd, got.data(), got.size(), 0), static_cast<ssize_t>(bytes_.size()));
  got.resize(bytes_.size());
  EXPECT_TRUE(got == bytes_);
  char digest[80] = {};
  ssize_t n = ::fgetxattr(*fd, DecodedFiles::kDigestXattr, digest, sizeof(digest));
  ::close(*fd);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(digest, static_cast<size_t>(n)), Sha256Digest(bytes_));
  // Another path of the same blob, or another size, is not this file.
  EXPECT_TRUE(cache_->OpenDecodedFile(source_.digest(), "usr/lib/other.so", bytes_.size())
                  .status()
                  .IsNotFound());
  struct stat st;
  EXPECT_EQ(::stat(FilePath().c_str(), &st), 0) << "a lookup of another path removed the file";
}

TEST_F(DecodedFilesTest, AFileOfAnotherSizeIsRemovedNotServed) {
  ASSERT_TRUE(Put().ok());
  ASSERT_EQ(::truncate(FilePath().c_str(), 1 << 20), 0);
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
  struct stat st;
  EXPECT_NE(::stat(FilePath().c_str(), &st), 0) << "the short file is still there";
}

TEST_F(DecodedFilesTest, AFillThatFailsOrFeedsTheWrongLengthLeavesNothing) {
  Result<bool> fails = cache_->PutDecodedFile(
      source_.digest(), kPath, bytes_.size(),
      [&](const std::function<Status(std::string_view)>& sink) {
        IMGFS_RETURN_IF_ERROR(sink(std::string_view(bytes_).substr(0, 1 << 20)));
        return Status::Unavailable("the registry went away");
      });
  EXPECT_TRUE(fails.status().IsUnavailable()) << fails.status().ToString();
  EXPECT_FALSE(
      cache_->PutDecodedFile(source_.digest(), kPath, bytes_.size() + 1, FillWith(bytes_)).ok());
  EXPECT_FALSE(
      cache_->PutDecodedFile(source_.digest(), kPath, bytes_.size() - 1, FillWith(bytes_)).ok());
  EXPECT_TRUE(DirEntries().empty()) << "left behind: " << DirEntries().front();
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
}

TEST_F(DecodedFilesTest, ATemporaryFileOfADeadWriterIsRemovedByTheNextWriter) {
  const std::string dir = DecodedFiles(root_).DirOf(DigestHex(source_.digest()));
  std::filesystem::create_directories(dir);
  const std::string abandoned = dir + "/" + DecodedFiles::NameOf("a") + ".tmp.1.0";
  const std::string live = dir + "/" + DecodedFiles::NameOf("b") + ".tmp.2.0";
  ASSERT_TRUE(test::WriteFile(abandoned, "half").ok());
  ASSERT_TRUE(test::WriteFile(live, "being written").ok());
  // Both untouched for a minute; only the live one's writer holds its lock.
  struct timespec old_times[2] = {{::time(nullptr) - 60, 0}, {::time(nullptr) - 60, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, abandoned.c_str(), old_times, 0), 0);
  ASSERT_EQ(::utimensat(AT_FDCWD, live.c_str(), old_times, 0), 0);
  int held = ::open(live.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);
  ASSERT_EQ(::flock(held, LOCK_EX), 0);
  ASSERT_TRUE(Put().ok());
  struct stat st;
  EXPECT_NE(::stat(abandoned.c_str(), &st), 0) << "the dead writer's file is still there";
  EXPECT_EQ(::stat(live.c_str(), &st), 0) << "a live writer's file was removed";
  ::close(held);
}

TEST_F(DecodedFilesTest, TheyCountInTheBlobsDiskBytesAndGoWithIt) {
  ASSERT_TRUE(cache_
                  ->ReadUnit({source_.digest(), 0, 64 << 10,
                              Sha256Digest(std::string_view(source_.blob()).substr(0, 64 << 10))},
                             &source_)
                  .ok());
  auto before = cache_->eviction().ListBlobs();
  ASSERT_TRUE(before.ok() && before->size() == 1u);
  ASSERT_TRUE(Put().ok());
  auto after = cache_->eviction().ListBlobs();
  ASSERT_TRUE(after.ok() && after->size() == 1u);
  EXPECT_GE((*after)[0].disk_bytes, (*before)[0].disk_bytes + bytes_.size());
  EXPECT_EQ(cache_->eviction().BlobsWithDecodedFiles(),
            std::vector<std::string>{std::string(DigestHex(source_.digest()))});

  ASSERT_TRUE(cache_->eviction().DropBlob(source_.digest()).ok());
  EXPECT_TRUE(cache_->eviction().BlobsWithDecodedFiles().empty());
  auto gone = cache_->eviction().ListBlobs();
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone->empty());
}

TEST_F(DecodedFilesTest, DecodedFilesWithoutTheirBlobAreListedAndCanBeDropped) {
  ASSERT_TRUE(Put().ok());  // no unit of the blob stored: a crash could leave this
  auto blobs = cache_->eviction().ListBlobs();
  ASSERT_TRUE(blobs.ok());
  ASSERT_EQ(blobs->size(), 1u);
  EXPECT_EQ((*blobs)[0].digest, source_.digest());
  EXPECT_GE((*blobs)[0].disk_bytes, bytes_.size());
  ASSERT_TRUE(cache_->eviction().DropDecodedFiles(source_.digest()).ok());
  blobs = cache_->eviction().ListBlobs();
  ASSERT_TRUE(blobs.ok());
  EXPECT_TRUE(blobs->empty());
}

TEST_F(DecodedFilesTest, UnderASizeLimitTheyTakeOnlyTheRoomOfOtherDecodedFiles) {
  const std::string other = Sha256Digest("another layer");
  ASSERT_TRUE(cache_
                  ->ReadUnit({source_.digest(), 0, 64 << 10,
                              Sha256Digest(std::string_view(source_.blob()).substr(0, 64 << 10))},
                             &source_)
                  .ok());
  cache_->SetSizeLimit(8 << 20, nullptr);
  ASSERT_TRUE(Put().ok());  // 64 KiB + 3 MiB: fits
  // 3 MiB more fit under 5 MiB only once the first decoded file goes; the unit stays.
  cache_->SetSizeLimit(5 << 20, nullptr);
  Result<bool> second = cache_->PutDecodedFile(other, kPath, bytes_.size(), FillWith(bytes_));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(*second);
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
  EXPECT_TRUE(cache_->HasUnit(source_.digest(), 0, 64 << 10));
  // Under 2 MiB there is no room at all: nothing is written, and nothing else goes.
  cache_->SetSizeLimit(2 << 20, nullptr);
  Result<bool> third = cache_->PutDecodedFile(source_.digest(), kPath, bytes_.size(),
                                              FillWith(bytes_));
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_FALSE(*third);
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
  EXPECT_TRUE(cache_->HasUnit(source_.digest(), 0, 64 << 10));
}

TEST_F(DecodedFilesTest, VerifyRemovesADamagedFileAndKeepsAGoodOne) {
  ASSERT_TRUE(Put().ok());
  auto clean = cache_->verifier().Verify({});
  ASSERT_TRUE(clean.ok()) << clean.status().ToString();
  EXPECT_EQ(clean->decoded_files, 1u);
  EXPECT_TRUE(clean->failures.empty());

  test::FlipByteInFile(FilePath(), 12345);
  auto damaged = cache_->verifier().Verify({});
  ASSERT_TRUE(damaged.ok()) << damaged.status().ToString();
  ASSERT_EQ(damaged->failures.size(), 1u);
  const VerifyFailure& f = damaged->failures[0];
  EXPECT_EQ(f.kind, "decoded file");
  EXPECT_EQ(f.key, source_.digest());
  EXPECT_EQ(f.range, DecodedFiles::NameOf(kPath));
  EXPECT_NE(f.problem.find("hash to"), std::string::npos) << f.problem;
  EXPECT_TRUE(f.dropped.ok());
  EXPECT_TRUE(
      cache_->OpenDecodedFile(source_.digest(), kPath, bytes_.size()).status().IsNotFound());
}

TEST_F(DecodedFilesTest, VerifyRemovesAFileWithoutItsDigest) {
  ASSERT_TRUE(Put().ok());
  ASSERT_EQ(::removexattr(FilePath().c_str(), DecodedFiles::kDigestXattr), 0);
  auto report = cache_->verifier().Verify({});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->failures.size(), 1u);
  EXPECT_NE(report->failures[0].problem.find("no valid"), std::string::npos);
  struct stat st;
  EXPECT_NE(::stat(FilePath().c_str(), &st), 0);
}

}  // namespace
}  // namespace imgfs::cache
