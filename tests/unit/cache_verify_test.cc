// The Verifier: a clean store verifies clean; a flipped byte in a complete blob, in a unit,
// in a unit checked by its caller's verifier (the TOC formats), a damaged layer index or
// document is found, reported with blob and range, and dropped (records first, then bytes),
// after which the store verifies clean and a read fetches the bytes again.
#include "cache/verify.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/eviction.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/temp_cache.h"
#include "tests/support/test_blobs.h"

namespace imgfs::cache {
namespace {

constexpr uint64_t kUnit = 64 << 10;

class CacheVerifyTest : public test::TempCacheTest {
 protected:
  CacheVerifyTest()
      : partial_(test::RandomBytes(4 * kUnit, 1)), whole_(test::RandomBytes(3 * kUnit, 2)) {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempCacheTest::SetUp());
    // A partly present blob: units 0 and 2 by sha256, unit 1 by a verifier of its own.
    ASSERT_TRUE(cache_->ReadUnit(Unit(0), &partial_).ok());
    ASSERT_TRUE(cache_->ReadUnit(Unit(2), &partial_).ok());
    ASSERT_TRUE(cache_->ReadUnit(CallerChecked(1), &partial_).ok());
    // A complete blob, written whole.
    auto writer = cache_->CreateBlobWriter(whole_.digest(), whole_.blob().size());
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    ASSERT_TRUE((*writer)->Append(whole_.blob()).ok());
    ASSERT_TRUE((*writer)->Commit().ok());
    ASSERT_TRUE(cache_->PutLayerIndex(whole_.digest(), "index of the whole blob").ok());
    const std::string doc = "{\"schemaVersion\":2}";
    doc_digest_ = Sha256Digest(doc);
    ASSERT_TRUE(cache_->PutDocument(doc_digest_, "application/json", doc).ok());
    ASSERT_TRUE(cache_->PutReference("example.com/app:v1", doc_digest_).ok());

    hooks_.unit_verifier = [this](std::string_view blob, uint64_t coff,
                                  uint64_t clen) -> Result<VerifyHooks::UnitCheck> {
      if (blob != partial_.digest() || coff != kUnit || clen != kUnit) {
        return Status::NotFound("no such unit in the index");
      }
      return VerifyHooks::UnitCheck(CallerChecked(1).verify);
    };
    hooks_.check_layer_index = [](std::string_view, std::string_view serialized) {
      return serialized.substr(0, 8) == "index of" ? Status::Ok() : Status::Corrupt("not an index");
    };
  }

  std::string_view PartialBytes(int i) const {
    return std::string_view(partial_.blob()).substr(i * kUnit, kUnit);
  }
  UnitRef Unit(int i) const {
    return UnitRef{partial_.digest(), i * kUnit, kUnit, Sha256Digest(PartialBytes(i))};
  }
  // A unit recorded without a sha256, as eStargz chunks are: its caller checks it.
  UnitRef CallerChecked(int i) const {
    UnitRef u{partial_.digest(), i * kUnit, kUnit, ""};
    std::string want = Sha256Digest(PartialBytes(i));
    u.verify = [want](std::string_view bytes) {
      return Sha256Digest(bytes) == want ? Status::Ok() : Status::DigestMismatch("chunk differs");
    };
    return u;
  }

  Result<VerifyReport> Verify() { return cache_->verifier().Verify(hooks_); }

  test::FakeBlobSource partial_, whole_;
  std::string doc_digest_;
  VerifyHooks hooks_;
};

TEST_F(CacheVerifyTest, CleanStoreVerifiesClean) {
  auto report = Verify();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->failures.empty()) << report->failures[0].ToString();
  EXPECT_EQ(report->complete_blobs, 1u);
  EXPECT_EQ(report->units, 3u);
  EXPECT_EQ(report->bytes, 3 * kUnit + whole_.blob().size());
  EXPECT_EQ(report->layer_indexes, 1u);
  EXPECT_EQ(report->documents, 1u);
  EXPECT_EQ(report->references, 1u);
}

TEST_F(CacheVerifyTest, CorruptCompleteBlobIsReportedAndDroppedWhole) {
  test::FlipByteInFile(test::StoredBlobPath(root_, whole_.digest()), kUnit + 7);
  auto report = Verify();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->failures.size(), 1u);
  const VerifyFailure& f = report->failures[0];
  EXPECT_EQ(f.kind, "blob");
  EXPECT_EQ(f.key, whole_.digest());
  EXPECT_EQ(f.range, "[0, " + std::to_string(3 * kUnit) + ")");
  EXPECT_TRUE(f.dropped.ok()) << f.dropped.ToString();
  EXPECT_NE(f.ToString().find("expected " + whole_.digest()), std::string::npos) << f.ToString();
  EXPECT_FALSE(cache_->GetBlobStats(whole_.digest()).complete);
  EXPECT_FALSE(std::filesystem::exists(test::StoredBlobPath(root_, whole_.digest())));
  // The layer index is metadata and stays; the next verify is clean.
  EXPECT_TRUE(cache_->GetLayerIndex(whole_.digest()).ok());
  auto again = Verify();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->failures.empty());
  EXPECT_EQ(again->complete_blobs, 0u);
}

TEST_F(CacheVerifyTest, CorruptUnitsAreReportedWithTheirRangeAndPunched) {
  const std::string path = test::StoredBlobPath(root_, partial_.digest());
  test::FlipByteInFile(path, 2 * kUnit + 100);  // a unit with a sha256
  test::FlipByteInFile(path, kUnit + 5);        // the unit its caller checks
  auto report = Verify();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->failures.size(), 2u);
  EXPECT_EQ(report->failures[0].kind, "unit");
  EXPECT_EQ(report->failures[0].range, "[65536, 131072)");
  EXPECT_NE(report->failures[0].problem.find("chunk differs"), std::string::npos)
      << report->failures[0].ToString();
  EXPECT_EQ(report->failures[1].range, "[131072, 196608)");
  EXPECT_NE(report->failures[1].problem.find("expected " + Unit(2).sha256), std::string::npos);
  for (const VerifyFailure& f : report->failures) EXPECT_TRUE(f.dropped.ok()) << f.ToString();
  EXPECT_TRUE(cache_->HasUnit(partial_.digest(), 0, kUnit));
  EXPECT_FALSE(cache_->HasUnit(partial_.digest(), kUnit, kUnit));
  EXPECT_FALSE(cache_->HasUnit(partial_.digest(), 2 * kUnit, kUnit));
  // A read fetches them again.
  auto again = Verify();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->failures.empty());
  EXPECT_EQ(again->units, 1u);
  auto read = cache_->ReadUnit(Unit(2), &partial_);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, PartialBytes(2));
}

TEST_F(CacheVerifyTest, UnitWithoutADigestAndNoIndexToCheckItFails) {
  hooks_.unit_verifier = nullptr;
  auto report = Verify();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->failures.size(), 1u);
  EXPECT_EQ(report->failures[0].range, "[65536, 131072)");
  EXPECT_NE(report->failures[0].problem.find("no layer index"), std::string::npos);
}

TEST_F(CacheVerifyTest, UnreadableLayerIndexIsDropped) {
  hooks_.check_layer_index = [](std::string_view, std::string_view) {
    return Status::Corrupt("version 99 is not known");
  };
  auto report = Verify();
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->failures.size(), 1u);
  EXPECT_EQ(report->failures[0].kind, "layer index of blob");
  EXPECT_EQ(report->failures[0].key, whole_.digest());
  EXPECT_NE(report->failures[0].ToString().find("version 99"), std::string::npos);
  EXPECT_TRUE(cache_->GetLayerIndex(whole_.digest()).status().IsNotFound());
}

}  // namespace
}  // namespace imgfs::cache
