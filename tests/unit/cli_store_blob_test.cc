// The store's `blob` file (cli/store_blob.h): only bytes verified against the blob digest are
// returned, whether they come from the registry, the cache's complete copy, or ranges fetched
// again after an eviction; a registry or a disk that changes a byte gives an error, never it.
#include "cli/store_blob.h"

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/eviction.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"

namespace imgfs::cli {
namespace {

using test::FakeBlobSource;

constexpr uint64_t kBlobSize = (uint64_t{3} << 20) + 12345;

std::string RandomBytes(uint64_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class StoreBlobTest : public ::testing::Test {
 protected:
  StoreBlobTest() : blob_(RandomBytes(kBlobSize, 3)), source_(blob_) {
    auto c = cache::Cache::Open(dir_.Sub("cache"));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    if (c.ok()) cache_ = std::move(*c);
    // An index as a TOC layer has it: a unit with a digest of its compressed bytes, one
    // verified only by decoded chunks (no sha256), gaps before, between and after.
    fs::Unit hashed;
    hashed.coff = 1000;
    hashed.clen = 50000;
    hashed.sha256 = Sha256Digest(std::string_view(blob_).substr(1000, 50000));
    fs::Unit chunk;
    chunk.coff = 1 << 20;
    chunk.clen = 300000;
    units_ = {chunk, hashed};
  }

  std::unique_ptr<VerifiedBlob> Blob() {
    return std::make_unique<VerifiedBlob>(source_.digest(), kBlobSize, units_, cache_.get(),
                                          &source_);
  }

  // The whole blob in 128 KiB reads, as FUSE asks for it.
  Result<std::string> ReadAll(VerifiedBlob& blob) {
    std::string out(kBlobSize, '\0');
    for (uint64_t off = 0; off < kBlobSize; off += 128 << 10) {
      IMGFS_ASSIGN_OR_RETURN(size_t n, blob.Read(off, 128 << 10, out.data() + off));
      if (n != std::min<uint64_t>(128 << 10, kBlobSize - off)) return Status::Internal("short");
    }
    return out;
  }

  test::TempDir dir_{"store-blob"};
  std::string blob_;
  FakeBlobSource source_;
  std::unique_ptr<cache::Cache> cache_;
  std::vector<fs::Unit> units_;
};

TEST_F(StoreBlobTest, ServesTheBlobFetchedWholeOnceThenFromTheCache) {
  auto blob = Blob();
  auto all = ReadAll(*blob);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_TRUE(*all == blob_);
  EXPECT_EQ(source_.read_alls(), 1);
  EXPECT_TRUE(cache_->GetBlobStats(source_.digest()).complete);
  // A range across a unit's end and a gap, and the blob's last bytes.
  char bytes[100];
  auto n = blob->Read(1000 + 50000 - 50, sizeof(bytes), bytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(bytes, 100), blob_.substr(1000 + 50000 - 50, 100));
  n = blob->Read(kBlobSize - 10, sizeof(bytes), bytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 10u);

  // A later store (a restart) re-hashes the cached copy: nothing from the registry.
  source_.FailWith(Status::Unavailable("registry gone"));
  auto again = Blob();
  all = ReadAll(*again);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_TRUE(*all == blob_);
  EXPECT_EQ(source_.read_alls(), 1);
}

TEST_F(StoreBlobTest, ChangedRegistryBytesAreNeverServed) {
  std::string changed = blob_;
  changed[kBlobSize - 20] ^= 1;  // in the trailing gap no unit covers
  source_.Add(source_.digest(), changed);
  auto blob = Blob();
  char bytes[20];
  auto n = blob->Read(kBlobSize - 20, sizeof(bytes), bytes);
  EXPECT_EQ(n.status().code(), Code::kDigestMismatch) << n.status().ToString();
  EXPECT_FALSE(cache_->GetBlobStats(source_.digest()).complete);
  // The registry heals: the next read verifies again and serves.
  source_.Add(source_.digest(), blob_);
  n = blob->Read(kBlobSize - 20, sizeof(bytes), bytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(bytes, 20), blob_.substr(kBlobSize - 20));
}

TEST_F(StoreBlobTest, ADamagedCopyIsNotServedAndAnEvictedOneIsFetchedByRange) {
  auto first = Blob();
  ASSERT_TRUE(ReadAll(*first).ok());
  // The disk changes a byte of a gap: the next store's pass finds the copy bad, drops it and
  // fetches the blob again.
  test::FlipByteInFile(test::StoredBlobPath(cache_->root(), source_.digest()), kBlobSize - 5);
  auto second = Blob();
  auto all = ReadAll(*second);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_TRUE(*all == blob_);
  EXPECT_EQ(source_.read_alls(), 2);

  // Evicted after the pass: ranges come back by range requests, checked against the pass's
  // digests, and a changed byte in them is an error.
  ASSERT_TRUE(cache_->eviction().DropBlob(source_.digest()).ok());
  char bytes[10];
  auto n = second->Read(0, sizeof(bytes), bytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(bytes, 10), blob_.substr(0, 10));
  EXPECT_GT(source_.requests(), 0);
  source_.FlipAt(kBlobSize - 5);
  n = second->Read(kBlobSize - 10, sizeof(bytes), bytes);
  EXPECT_EQ(n.status().code(), Code::kDigestMismatch) << n.status().ToString();
  source_.Heal();
  n = second->Read(kBlobSize - 10, sizeof(bytes), bytes);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(bytes, 10), blob_.substr(kBlobSize - 10));
  EXPECT_EQ(source_.read_alls(), 2);
}

}  // namespace
}  // namespace imgfs::cli
