// Eviction's seams: listing what the store holds, punching a unit out, dropping a blob, and
// pins that live as long as their holder.
#include "cache/eviction.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/temp_cache.h"
#include "tests/support/test_blobs.h"

namespace imgfs::cache {
namespace {

constexpr uint64_t kUnit = 64 << 10;  // a multiple of the file system block

std::string RandomBlob(size_t n) { return test::RandomBytes(n, 11); }

class CacheEvictionTest : public test::TempCacheTest {
 protected:
  CacheEvictionTest() : source_(RandomBlob(4 * kUnit)) {}

  UnitRef Unit(int i) {
    UnitRef u{source_.digest(), i * kUnit, kUnit,
              Sha256Digest(std::string_view(source_.blob()).substr(i * kUnit, kUnit))};
    return u;
  }

  bool HasUnit(int i) { return cache_->HasUnit(source_.digest(), i * kUnit, kUnit); }

  test::FakeBlobSource source_;
};

TEST_F(CacheEvictionTest, ListsBlobsAndUnitsWithSizesAndAccessTimes) {
  ASSERT_TRUE(cache_->ReadUnit(Unit(0), &source_).ok());
  ASSERT_TRUE(cache_->ReadUnit(Unit(2), &source_).ok());
  auto blobs = cache_->eviction().ListBlobs();
  ASSERT_TRUE(blobs.ok()) << blobs.status().ToString();
  ASSERT_EQ(blobs->size(), 1u);
  const BlobUsage& b = (*blobs)[0];
  EXPECT_EQ(b.digest, source_.digest());
  EXPECT_EQ(b.units_present, 2u);
  EXPECT_EQ(b.bytes_present, 2 * kUnit);
  EXPECT_GT(b.access_unix, 0);
  EXPECT_GE(b.disk_bytes, 2 * kUnit);
  auto units = cache_->eviction().ListUnits(source_.digest());
  ASSERT_TRUE(units.ok()) << units.status().ToString();
  ASSERT_EQ(units->size(), 2u);
  EXPECT_EQ((*units)[0].coff, 0u);
  EXPECT_EQ((*units)[1].coff, 2 * kUnit);
  EXPECT_EQ((*units)[1].clen, kUnit);
}

TEST_F(CacheEvictionTest, PunchedUnitIsGoneAndFetchedAgain) {
  ASSERT_TRUE(cache_->ReadUnit(Unit(0), &source_).ok());
  ASSERT_TRUE(cache_->ReadUnit(Unit(1), &source_).ok());
  auto before = cache_->eviction().ListBlobs();
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(cache_->eviction().PunchUnit(source_.digest(), kUnit).ok());
  EXPECT_FALSE(HasUnit(1));
  EXPECT_TRUE(HasUnit(0));
  auto after = cache_->eviction().ListBlobs();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0].units_present, 1u);
  EXPECT_LT((*after)[0].disk_bytes, (*before)[0].disk_bytes);
  EXPECT_EQ(cache_->eviction().PunchUnit(source_.digest(), kUnit).code(), Code::kNotFound);
  int requests = source_.requests();
  auto again = cache_->ReadUnit(Unit(1), &source_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, source_.blob().substr(kUnit, kUnit));
  EXPECT_EQ(source_.requests(), requests + 1);
}

TEST_F(CacheEvictionTest, DroppedBlobLeavesNothingAndIsFetchedAgain) {
  ASSERT_TRUE(cache_->ReadUnit(Unit(3), &source_).ok());
  ASSERT_TRUE(cache_->eviction().DropBlob(source_.digest()).ok());
  EXPECT_FALSE(HasUnit(3));
  struct stat st;
  EXPECT_NE(::stat(test::StoredBlobPath(root_, source_.digest()).c_str(), &st), 0);
  auto blobs = cache_->eviction().ListBlobs();
  ASSERT_TRUE(blobs.ok());
  EXPECT_TRUE(blobs->empty());
  EXPECT_TRUE(cache_->eviction().DropBlob(source_.digest()).ok());  // absent is fine
  auto again = cache_->ReadUnit(Unit(3), &source_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(HasUnit(3));
}

TEST_F(CacheEvictionTest, PinsLastAsLongAsTheirHolder) {
  const std::string other = Sha256Digest("another blob");
  {
    auto pin = cache_->eviction().PinBlobs({source_.digest()});
    ASSERT_TRUE(pin.ok()) << pin.status().ToString();
    auto pinned = cache_->eviction().PinnedBlobs();
    ASSERT_TRUE(pinned.ok());
    EXPECT_EQ(*pinned, std::set<std::string>{source_.digest()});
  }
  auto pinned = cache_->eviction().PinnedBlobs();
  ASSERT_TRUE(pinned.ok());
  EXPECT_TRUE(pinned->empty());

  // A process that dies holding a pin (no destructor runs) leaves a stale file, not a pin.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto c = Cache::Open(root_);
    if (!c.ok()) _exit(2);
    auto pin = (*c)->eviction().PinBlobs({other});
    _exit(pin.ok() ? 0 : 3);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);
  EXPECT_FALSE(std::filesystem::is_empty(root_ + "/pins"));
  pinned = cache_->eviction().PinnedBlobs();
  ASSERT_TRUE(pinned.ok());
  EXPECT_TRUE(pinned->empty());
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/pins"));
}

}  // namespace
}  // namespace imgfs::cache
