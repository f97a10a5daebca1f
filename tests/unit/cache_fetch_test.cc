// Cache fetch path: units verified by a caller's check instead of a digest, and FetchUnits
// (coalesced range requests, per-unit verification, single flight with ReadUnit).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/fetcher.h"
#include "cache/lmdb_env.h"
#include "cache/unit_store.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/temp_cache.h"

namespace imgfs::cache {
namespace {

// Whether `cache` holds unit `u` (the key of its UnitRef; its digest and verifier play no part).
bool Present(Cache& cache, const UnitRef& u) { return cache.HasUnit(u.blob, u.coff, u.clen); }

constexpr uint64_t kUnitSize = 10000;
constexpr int kUnits = 40;

class CacheFetchTest : public test::TempCacheTest {
 protected:
  CacheFetchTest() : blob_(MakeBlob()), source_(blob_) {}

  static std::string MakeBlob() {
    std::mt19937_64 rng(7);
    std::string blob(kUnitSize * kUnits, '\0');
    for (auto& c : blob) c = static_cast<char>(rng());
    return blob;
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempCacheTest::SetUp());
    verify_calls_ = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < kUnits; ++i) {
      UnitRef u;
      u.blob = source_.digest();
      u.coff = i * kUnitSize;
      u.clen = kUnitSize;
      u.sha256 = Sha256Digest(std::string_view(blob_).substr(u.coff, u.clen));
      digest_units_.push_back(u);
      checked_units_.push_back(Checked(u.coff, u.clen));
    }
  }

  // A unit without a digest whose verifier knows the bytes some other way (as the content
  // reader knows the digests of the decoded chunks).
  UnitRef Checked(uint64_t coff, uint64_t clen) {
    UnitRef u;
    u.blob = source_.digest();
    u.coff = coff;
    u.clen = clen;
    std::string want = Sha256Digest(std::string_view(blob_).substr(coff, clen));
    auto calls = verify_calls_;
    u.verify = [want, calls](std::string_view bytes) {
      calls->fetch_add(1);
      std::string got = Sha256Digest(bytes);
      if (got != want) return Status::DigestMismatch("decoded chunk hashes to " + got);
      return Status::Ok();
    };
    return u;
  }

  std::string Expected(const UnitRef& u) const { return blob_.substr(u.coff, u.clen); }

  void FlipStoredByte(uint64_t offset) {
    test::FlipByteInFile(test::StoredBlobPath(dir_ + "/cache", source_.digest()), offset);
  }

  std::string blob_;
  test::FakeBlobSource source_;
  std::shared_ptr<std::atomic<int>> verify_calls_;
  std::vector<UnitRef> digest_units_;
  std::vector<UnitRef> checked_units_;
};

TEST_F(CacheFetchTest, UnitWithoutDigestIsVerifiedByItsCheckStoredAndReadBackOffline) {
  const UnitRef& u = checked_units_[3];
  auto r = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
  EXPECT_EQ(verify_calls_->load(), 1);
  EXPECT_TRUE(Present(*cache_, u));
  BlobStats stats = cache_->GetBlobStats(u.blob);
  EXPECT_EQ(stats.units_present, 1u);
  EXPECT_EQ(stats.bytes_present, kUnitSize);

  // Read back offline: the stored bytes go through the check again.
  r = cache_->ReadUnit(u, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
  EXPECT_EQ(verify_calls_->load(), 2);
  EXPECT_EQ(source_.requests(), 1);
}

TEST_F(CacheFetchTest, UnitWithoutDigestOrCheckIsRejected) {
  UnitRef u = checked_units_[0];
  u.verify = nullptr;
  EXPECT_EQ(cache_->ReadUnit(u, &source_).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(cache_->PutUnit(u, Expected(u)).code(), Code::kInvalidArgument);
  EXPECT_EQ(cache_->FetchUnits({u}, &source_, 1 << 20).code(), Code::kInvalidArgument);
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(source_.requests(), 0);
}

TEST_F(CacheFetchTest, FlippedBitFailsTheCheckStoresNothingAndHealsWithTheSource) {
  const UnitRef& u = checked_units_[5];
  source_.FlipAt(u.coff + 17);
  auto r = cache_->ReadUnit(u, &source_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDigestMismatch) << r.status().ToString();
  EXPECT_NE(r.status().message().find(u.blob), std::string::npos);
  EXPECT_EQ(source_.requests(), 2) << "one retry, no more";
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(cache_->GetBlobStats(u.blob).units_present, 0u);
  EXPECT_EQ(cache_->ReadUnit(u, nullptr).status().code(), Code::kUnavailable);

  source_.Heal();
  r = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
  EXPECT_TRUE(Present(*cache_, u));
}

TEST_F(CacheFetchTest, PutUnitUsesTheCheck) {
  const UnitRef& u = checked_units_[1];
  std::string bad = Expected(u);
  bad[9] ^= 1;
  EXPECT_EQ(cache_->PutUnit(u, bad).code(), Code::kDigestMismatch);
  EXPECT_FALSE(Present(*cache_, u));
  ASSERT_TRUE(cache_->PutUnit(u, Expected(u)).ok());
  EXPECT_TRUE(Present(*cache_, u));
}

TEST_F(CacheFetchTest, StoredUnitThatFailsItsCheckIsDroppedAndFetchedAgain) {
  const UnitRef& u = checked_units_[7];
  ASSERT_TRUE(cache_->ReadUnit(u, &source_).ok());
  FlipStoredByte(u.coff + 100);
  EXPECT_EQ(cache_->ReadUnit(u, nullptr).status().code(), Code::kUnavailable)
      << "corrupt stored bytes must never be served";
  EXPECT_FALSE(Present(*cache_, u));
  auto r = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
  EXPECT_EQ(source_.requests(), 2);
}

TEST_F(CacheFetchTest, ThrowingSourceAnswersEveryReaderWithAnErrorAndCachesNothing) {
  // A source that throws something that is not even a std::exception.
  test::FakeBlobSource thrower(blob_);
  thrower.ThrowNext(1 << 30, test::FakeBlobSource::Throw::kNotAnException);
  const UnitRef& u = digest_units_[5];
  std::vector<std::thread> readers;
  std::atomic<int> internal{0};
  for (int i = 0; i < 6; ++i) {
    readers.emplace_back([&] {
      auto r = cache_->ReadUnit(u, &thrower);
      if (!r.ok() && r.status().code() == Code::kInternal) internal.fetch_add(1);
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(internal.load(), 6);
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(cache_->FetchUnits({u}, &thrower, 1 << 20).code(), Code::kInternal);
  // Nothing of the failed flights lingers: a good source is asked and served.
  auto r = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
}

TEST_F(CacheFetchTest, AdjacentUnitsAreFetchedWithOneRequest) {
  std::vector<UnitRef> want(checked_units_.begin() + 2, checked_units_.begin() + 12);
  std::reverse(want.begin(), want.end());  // order does not matter
  ASSERT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  EXPECT_EQ(source_.requests(), 1);
  EXPECT_EQ(source_.bytes(), 10 * kUnitSize);
  ASSERT_EQ(source_.ranges().size(), 1u);
  EXPECT_EQ(source_.ranges()[0], std::make_pair(2 * kUnitSize, 10 * kUnitSize));
  for (const UnitRef& u : want) {
    EXPECT_TRUE(Present(*cache_, u)) << u.coff;
    auto r = cache_->ReadUnit(u, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, Expected(u));
  }
  // Everything present: nothing more to fetch.
  ASSERT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  EXPECT_EQ(source_.requests(), 1);
}

TEST_F(CacheFetchTest, DigestUnitsCoalesceToo) {
  std::vector<UnitRef> want(digest_units_.begin(), digest_units_.begin() + 4);
  ASSERT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  EXPECT_EQ(source_.requests(), 1);
  for (const UnitRef& u : want) EXPECT_TRUE(Present(*cache_, u));
}

TEST_F(CacheFetchTest, RequestsRespectTheSizeBoundAndSkipPresentUnitsAndLargeGaps) {
  ASSERT_TRUE(cache_->ReadUnit(checked_units_[4], &source_).ok());
  source_.ResetCounts();
  // Units 0..9 with 4 already present (a 10000-byte gap: bridged), and 30 (a large gap).
  std::vector<UnitRef> want(checked_units_.begin(), checked_units_.begin() + 10);
  want.push_back(checked_units_[30]);
  ASSERT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  auto ranges = source_.ranges();
  std::sort(ranges.begin(), ranges.end());
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], std::make_pair(uint64_t{0}, 10 * kUnitSize));
  EXPECT_EQ(ranges[1], std::make_pair(30 * kUnitSize, kUnitSize));

  // A 3-unit bound splits 10 adjacent units into 3 + 3 + 3 + 1.
  source_.ResetCounts();
  std::vector<UnitRef> more(checked_units_.begin() + 10, checked_units_.begin() + 20);
  ASSERT_TRUE(cache_->FetchUnits(more, &source_, 3 * kUnitSize).ok());
  EXPECT_EQ(source_.requests(), 4);
  EXPECT_EQ(source_.bytes(), 10 * kUnitSize);
  for (const auto& [off, len] : source_.ranges()) EXPECT_LE(len, 3 * kUnitSize);
  for (const UnitRef& u : more) EXPECT_TRUE(Present(*cache_, u));
}

TEST_F(CacheFetchTest, BadUnitOfACoalescedResponseCostsOnlyItself) {
  std::vector<UnitRef> want(checked_units_.begin(), checked_units_.begin() + 5);
  source_.FlipAt(2 * kUnitSize + 5);
  Status s = cache_->FetchUnits(want, &source_, 1 << 20);
  EXPECT_EQ(s.code(), Code::kDigestMismatch) << s.ToString();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Present(*cache_, want[i]), i != 2) << i;
  // One coalesced request, then unit 2 alone once more.
  EXPECT_EQ(source_.requests(), 2);

  source_.Heal();
  EXPECT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  EXPECT_TRUE(Present(*cache_, want[2]));
  EXPECT_EQ(source_.requests(), 3);
}

TEST_F(CacheFetchTest, SourceErrorsAndOfflineAreReported) {
  std::vector<UnitRef> want(checked_units_.begin(), checked_units_.begin() + 3);
  EXPECT_EQ(cache_->FetchUnits(want, nullptr, 1 << 20).code(), Code::kUnavailable);
  UnitRef wrong = checked_units_[0];
  wrong.blob = Sha256Digest("another blob");
  EXPECT_EQ(cache_->FetchUnits({wrong}, &source_, 1 << 20).code(), Code::kNotFound);
  EXPECT_FALSE(Present(*cache_, wrong));
  EXPECT_TRUE(cache_->FetchUnits({}, &source_, 1 << 20).ok());
}

TEST_F(CacheFetchTest, SeparateGroupsAreFetchedInParallel) {
  source_.SetDelay(std::chrono::milliseconds(100));
  std::vector<UnitRef> want;
  for (int i = 0; i < kUnits; i += 8) want.push_back(checked_units_[i]);  // 5 far-apart units
  ASSERT_TRUE(cache_->FetchUnits(want, &source_, 1 << 20).ok());
  EXPECT_EQ(source_.requests(), 5);
  EXPECT_GE(source_.max_inside(), 2);
  EXPECT_LE(source_.max_inside(), kFetchParallelism);
}

TEST_F(CacheFetchTest, ReadersWaitForAFetchUnitsInsteadOfFetchingAgain) {
  source_.SetDelay(std::chrono::milliseconds(300));
  std::vector<UnitRef> all = checked_units_;
  std::thread fetcher([&] { EXPECT_TRUE(cache_->FetchUnits(all, &source_, 1 << 30).ok()); });
  while (cache_->FetchesInFlight() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    readers.emplace_back([&, i] {
      const UnitRef& u = checked_units_[i * 5];
      auto r = cache_->ReadUnit(u, &source_);
      if (r.ok() && *r == Expected(u)) ++good;
    });
  }
  for (auto& t : readers) t.join();
  fetcher.join();
  EXPECT_EQ(good.load(), 8);
  EXPECT_EQ(source_.requests(), 1);
  EXPECT_EQ(source_.bytes(), blob_.size());
  EXPECT_EQ(cache_->FetchesInFlight(), 0);
}

TEST_F(CacheFetchTest, ManyThreadsReadingAndPrefetchingFetchEachUnitOnce) {
  source_.SetDelay(std::chrono::milliseconds(5));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int k = 0; k < 30; ++k) {
        if (t % 4 == 0) {
          int first = static_cast<int>(rng() % kUnits);
          int n = 1 + static_cast<int>(rng() % 6);
          std::vector<UnitRef> want;
          for (int i = first; i < std::min(kUnits, first + n); ++i) {
            want.push_back(checked_units_[i]);
          }
          // One unit per request: coalescing may bridge a present unit, which would blur
          // the once-per-unit count below.
          if (!cache_->FetchUnits(want, &source_, kUnitSize).ok()) ++bad;
        } else {
          const UnitRef& u = checked_units_[rng() % kUnits];
          auto r = cache_->ReadUnit(u, &source_);
          if (!r.ok() || *r != Expected(u)) ++bad;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // Every byte was fetched at most once (some units may never have been asked for).
  EXPECT_LE(source_.bytes(), blob_.size());
  std::vector<std::pair<uint64_t, uint64_t>> ranges = source_.ranges();
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EXPECT_GE(ranges[i].first, ranges[i - 1].first + ranges[i - 1].second)
        << "bytes at " << ranges[i].first << " were fetched twice";
  }
}

// The fetch budget (kFetchBudgetBytes in a mount) bounds the bytes all fetches hold at once:
// a Fetcher with a budget of 3 units, 16 threads reading units alone and in coalesced pairs.
// Without the budget, up to 16 requests were inside the source at once. (A request larger
// than the budget runs alone: ByteBudgetTest.)
TEST_F(CacheFetchTest, BytesInFlightNeverExceedTheFetchBudget) {
  const std::string root = dir_ + "/budget";
  for (const char* sub : {"/index", "/blobs/sha256"}) {
    std::filesystem::create_directories(root + sub);
  }
  auto env = LmdbEnv::Open(root + "/index", root);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  UnitStore store(env->get(), root);
  constexpr uint64_t kBudget = 3 * kUnitSize;
  Fetcher fetcher(&store, kBudget);

  source_.SetDelay(std::chrono::milliseconds(5));  // requests overlap unless held back
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  std::set<int> asked;
  for (int t = 0; t < 16; ++t) {
    const int first = 2 * t;
    const int count = t % 4 == 0 ? 2 : 1;  // a coalesced pair, or a unit alone
    for (int i = first; i < first + count; ++i) asked.insert(i);
    threads.emplace_back([&, first, count] {
      if (count == 2) {
        std::vector<UnitRef> pair(checked_units_.begin() + first,
                                  checked_units_.begin() + first + 2);
        if (!fetcher.FetchUnits(pair, &source_, 1 << 20).ok()) ++bad;
      } else {
        const UnitRef& u = checked_units_[first];
        auto r = fetcher.ReadUnit(u, &source_);
        if (!r.ok() || *r != Expected(u)) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_LE(source_.max_bytes_inside(), kBudget);
  EXPECT_GE(source_.max_inside(), 2);  // the budget still lets requests run side by side
  EXPECT_LE(fetcher.BudgetPeak(), kBudget);
  EXPECT_EQ(fetcher.BudgetUsed(), 0u);
  EXPECT_EQ(source_.requests(), 16);
  for (int i : asked) {
    Result<bool> published = store.IsPublished(checked_units_[i]);
    EXPECT_TRUE(published.ok() && *published) << "unit " << i;
  }
}

}  // namespace
}  // namespace imgfs::cache
