// The eviction policy (cache/gc.h): which blobs and units an LRU pass chooses, a pass over a
// real store that respects pins, and the automatic limit of cache/auto_gc.h while a store grows.
#include "cache/gc.h"

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/auto_gc.h"
#include "cache/cache.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/temp_cache.h"

namespace imgfs::cache {
namespace {

constexpr uint64_t kUnit = 64 << 10;  // a multiple of the file system block

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

BlobUsage Blob(const std::string& name, int64_t access, uint64_t disk, bool complete = true,
               uint64_t units = 0) {
  BlobUsage b;
  b.digest = Sha256Digest(name);
  b.access_unix = access;
  b.disk_bytes = disk;
  b.complete = complete;
  b.units_present = units;
  return b;
}

std::vector<UnitUsage> NoUnits(const std::string&) { return {}; }

std::vector<std::string> Digests(const std::vector<GcAction>& plan) {
  std::vector<std::string> out;
  for (const GcAction& a : plan) out.push_back(a.digest);
  return out;
}

TEST(PlanGcTest, EvictsLeastRecentlyUsedUntilUnderTheLimit) {
  std::vector<BlobUsage> blobs = {Blob("new", 300, 100), Blob("old", 100, 100),
                                  Blob("mid", 200, 100)};
  std::set<std::string> all = {blobs[0].digest, blobs[1].digest, blobs[2].digest};
  auto plan = PlanGc(blobs, {}, all, GcPolicy{250, false}, NoUnits);
  EXPECT_EQ(Digests(plan), std::vector<std::string>{Sha256Digest("old")});
  plan = PlanGc(blobs, {}, all, GcPolicy{150, false}, NoUnits);
  EXPECT_EQ(Digests(plan), (std::vector<std::string>{Sha256Digest("old"), Sha256Digest("mid")}));
  plan = PlanGc(blobs, {}, all, GcPolicy{300, false}, NoUnits);
  EXPECT_TRUE(plan.empty());
  plan = PlanGc(blobs, {}, all, GcPolicy{std::nullopt, false}, NoUnits);
  EXPECT_TRUE(plan.empty());
}

TEST(PlanGcTest, UnreferencedBlobsGoFirstAndPinnedNever) {
  std::vector<BlobUsage> blobs = {Blob("old-used", 100, 100), Blob("new-unused", 300, 100),
                                  Blob("pinned-old", 50, 100), Blob("pinned-unused", 60, 100)};
  std::set<std::string> referenced = {blobs[0].digest, blobs[2].digest};
  std::set<std::string> pinned = {blobs[2].digest, blobs[3].digest};
  auto plan = PlanGc(blobs, pinned, referenced, GcPolicy{350, false}, NoUnits);
  ASSERT_EQ(Digests(plan), std::vector<std::string>{Sha256Digest("new-unused")});
  EXPECT_FALSE(plan[0].referenced);
  // Under a limit the pinned ones are never chosen, even when nothing else is left.
  plan = PlanGc(blobs, pinned, referenced, GcPolicy{0, false}, NoUnits);
  EXPECT_EQ(Digests(plan),
            (std::vector<std::string>{Sha256Digest("new-unused"), Sha256Digest("old-used")}));
  // Without a limit, drop_unreferenced takes every unreferenced, unpinned blob and no more.
  plan = PlanGc(blobs, pinned, referenced, GcPolicy{std::nullopt, true}, NoUnits);
  EXPECT_EQ(Digests(plan), std::vector<std::string>{Sha256Digest("new-unused")});
}

TEST(PlanGcTest, TrimsThePartlyPresentLastVictimFromItsEnd) {
  // 4 units of 100 bytes; 150 bytes to free: the last two units go, the first two stay.
  std::vector<BlobUsage> blobs = {Blob("partial", 100, 400, false, 4), Blob("newer", 200, 100)};
  std::set<std::string> all = {blobs[0].digest, blobs[1].digest};
  auto units = [&](const std::string& digest) {
    EXPECT_EQ(digest, Sha256Digest("partial"));
    return std::vector<UnitUsage>{{0, 100}, {100, 100}, {200, 100}, {300, 100}};
  };
  auto plan = PlanGc(blobs, {}, all, GcPolicy{350, false}, units);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_FALSE(plan[0].whole);
  EXPECT_EQ(plan[0].punch_coffs, (std::vector<uint64_t>{300, 200}));
  // More to free than it holds: it goes whole, and the next one is trimmed or dropped.
  plan = PlanGc(blobs, {}, all, GcPolicy{50, false}, units);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_TRUE(plan[0].whole);
  EXPECT_TRUE(plan[1].whole);
}

TEST(PlanGcTest, DecodedFilesGoBeforeAnyBlobAndAreNotCountedTwice) {
  // Each blob takes 100 bytes of units plus its decoded files.
  std::vector<BlobUsage> blobs = {Blob("old", 100, 160), Blob("new", 300, 140),
                                  Blob("pinned", 50, 170)};
  blobs[0].decoded_bytes = 60;
  blobs[1].decoded_bytes = 40;
  blobs[2].decoded_bytes = 70;
  std::set<std::string> all = {blobs[0].digest, blobs[1].digest, blobs[2].digest};
  std::set<std::string> pinned = {blobs[2].digest};
  // 470 bytes, limit 410: the oldest unpinned blob's decoded files are enough.
  auto plan = PlanGc(blobs, pinned, all, GcPolicy{410, false}, NoUnits);
  ASSERT_EQ(Digests(plan), std::vector<std::string>{Sha256Digest("old")});
  EXPECT_TRUE(plan[0].decoded_only);
  EXPECT_FALSE(plan[0].whole);
  EXPECT_EQ(plan[0].bytes, 60u);
  // Limit 370: every unpinned decoded file goes (100 bytes) before any unit does.
  plan = PlanGc(blobs, pinned, all, GcPolicy{370, false}, NoUnits);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_TRUE(plan[0].decoded_only && plan[1].decoded_only);
  // Limit 270: then "old" goes whole, freeing only the 100 bytes its decoded files left.
  plan = PlanGc(blobs, pinned, all, GcPolicy{270, false}, NoUnits);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_TRUE(plan[2].whole);
  EXPECT_EQ(plan[2].digest, Sha256Digest("old"));
  EXPECT_EQ(plan[2].bytes, 100u);
  // Room for a decoded file: only decoded files go, however far above the limit.
  GcPolicy room{0, false};
  room.decoded_files_only = true;
  plan = PlanGc(blobs, pinned, all, room, NoUnits);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_TRUE(plan[0].decoded_only && plan[1].decoded_only);
}

class CacheGcTest : public test::TempCacheTest {
 protected:
  // A blob of `units` units in `source`, every unit read into the cache.
  std::string Fill(test::FakeBlobSource* source, int units, uint64_t seed) {
    std::string digest = source->Add(RandomBytes(units * kUnit, seed));
    for (int i = 0; i < units; ++i) {
      std::string bytes = RandomBytes(units * kUnit, seed).substr(i * kUnit, kUnit);
      UnitRef u{digest, i * kUnit, kUnit, Sha256Digest(bytes)};
      auto r = cache_->ReadUnit(u, source);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    }
    return digest;
  }

  uint64_t Disk() {
    auto blobs = cache_->eviction().ListBlobs();
    EXPECT_TRUE(blobs.ok());
    return blobs.ok() ? DiskBytes(*blobs) : 0;
  }
};

TEST_F(CacheGcTest, CollectGarbageBringsTheStoreUnderTheLimitAndSparesPinnedBlobs) {
  test::FakeBlobSource source;
  std::string a = Fill(&source, 4, 1), b = Fill(&source, 4, 2), c = Fill(&source, 4, 3);
  const uint64_t before = Disk();
  ASSERT_GE(before, 12 * kUnit);
  auto pin = cache_->eviction().PinBlobs({a});
  ASSERT_TRUE(pin.ok());
  auto report = CollectGarbage(*cache_, {a, b, c}, GcPolicy{5 * kUnit, false});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_LE(report->bytes_after, 5 * kUnit);
  EXPECT_EQ(report->bytes_after, Disk());
  EXPECT_EQ(report->bytes_before, before);
  EXPECT_GE(report->pinned_bytes, 4 * kUnit);
  EXPECT_TRUE(cache_->GetBlobStats(a).units_present == 4) << "the pinned blob lost units";
  // Nothing left to evict but the pinned blob: a limit of 0 leaves just it.
  report = CollectGarbage(*cache_, {a, b, c}, GcPolicy{0, false});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->bytes_after, report->pinned_bytes);
  pin->reset();
  report = CollectGarbage(*cache_, {a, b, c}, GcPolicy{0, false});
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(Disk(), 0u);
}

// The limit is kept while the store grows: after every unit, at most a step above it.
TEST_F(CacheGcTest, SizeLimitHoldsWhileTheStoreGrows) {
  const uint64_t limit = 2 << 20;
  const uint64_t step = AutoGcStep(limit);
  ASSERT_EQ(step, 256u << 10);
  int passes = 0;
  cache_->SetSizeLimit(limit, [&](Cache&) -> Result<std::set<std::string>> {
    ++passes;
    return std::set<std::string>{};
  });
  test::FakeBlobSource source;
  uint64_t written = 0;
  for (int blob = 0; blob < 12; ++blob) {
    Fill(&source, 4, 100 + blob);  // 256 KiB each: 3 MiB in all
    written += 4 * kUnit;
    EXPECT_LE(Disk(), limit + step) << "after blob " << blob;
  }
  EXPECT_GE(written, limit + 4 * step);
  // One pass per step's bytes at most, not one per unit.
  EXPECT_GE(passes, 1);
  EXPECT_LE(passes, static_cast<int>(written / step));
  cache_->SetSizeLimit(0, nullptr);
}

}  // namespace
}  // namespace imgfs::cache
