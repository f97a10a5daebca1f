// Cache content store: units are fetched once, verified, stored, healed when damaged, shared
// between opens and processes; whole blobs appear only when committed.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "cache/lmdb_env.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"
#include "tests/support/test_blobs.h"

namespace imgfs::cache {
namespace {

// Whether `cache` holds unit `u` (the key of its UnitRef; its digest and verifier play no part).
bool Present(Cache& cache, const UnitRef& u) { return cache.HasUnit(u.blob, u.coff, u.clen); }

constexpr uint64_t kBlobSize = 1 << 20;
constexpr uint64_t kUnitSize = 100000;  // not a power of two: the last unit is short

std::string MakeBlob() { return test::RandomBytes(kBlobSize, 42); }

class CacheContentTest : public ::testing::Test {
 protected:
  CacheContentTest() : blob_(MakeBlob()), source_(blob_) {}

  void SetUp() override {
    for (uint64_t off = 0; off < kBlobSize; off += kUnitSize) {
      UnitRef u;
      u.blob = source_.digest();
      u.coff = off;
      u.clen = std::min(kUnitSize, kBlobSize - off);
      u.sha256 = Sha256Digest(std::string_view(blob_).substr(off, u.clen));
      units_.push_back(u);
    }
    cache_ = OpenCache();
    ASSERT_TRUE(cache_);
  }
  void TearDown() override { cache_.reset(); }

  std::unique_ptr<Cache> OpenCache() {
    auto c = Cache::Open(root_);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  std::string Expected(const UnitRef& u) const { return blob_.substr(u.coff, u.clen); }

  std::string BlobPath() const { return test::StoredBlobPath(root_, source_.digest()); }

  void FlipStoredByte(uint64_t offset) { test::FlipByteInFile(BlobPath(), offset); }

  std::string blob_;
  test::FakeBlobSource source_;
  std::vector<UnitRef> units_;
  test::TempDir tmp_{"cache-content"};
  const std::string dir_ = tmp_.path();
  const std::string root_ = tmp_.Sub("cache");
  std::unique_ptr<Cache> cache_;
};

TEST_F(CacheContentTest, MissIsFetchedVerifiedStoredAndThenServedFromTheStore) {
  const UnitRef& u = units_[3];
  EXPECT_FALSE(Present(*cache_, u));
  auto first = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, Expected(u));
  EXPECT_EQ(source_.requests(), 1);
  EXPECT_TRUE(Present(*cache_, u));

  auto second = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, Expected(u));
  EXPECT_EQ(source_.requests(), 1);

  // Sparse: the unit sits at its real offset of the blob file.
  std::ifstream in(BlobPath(), std::ios::binary);
  in.seekg(static_cast<std::streamoff>(u.coff));
  std::string on_disk(u.clen, '\0');
  in.read(on_disk.data(), static_cast<std::streamsize>(u.clen));
  EXPECT_EQ(on_disk, Expected(u));

  BlobStats stats = cache_->GetBlobStats(u.blob);
  EXPECT_EQ(stats.units_present, 1u);
  EXPECT_EQ(stats.bytes_present, u.clen);
  EXPECT_FALSE(stats.complete);
}

TEST_F(CacheContentTest, OfflineMissIsUnavailable) {
  auto r = cache_->ReadUnit(units_[0], nullptr);
  ASSERT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("offline"), std::string::npos) << r.status().message();
}

TEST_F(CacheContentTest, UnitsSurviveReopenAndAreServedOffline) {
  ASSERT_TRUE(cache_->ReadUnit(units_[1], &source_).ok());
  ASSERT_TRUE(cache_->ReadUnit(units_[7], &source_).ok());
  cache_.reset();
  auto reopened = OpenCache();
  ASSERT_TRUE(reopened);
  for (int i : {1, 7}) {
    auto r = reopened->ReadUnit(units_[i], nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, Expected(units_[i]));
  }
  EXPECT_EQ(reopened->GetBlobStats(source_.digest()).units_present, 2u);
}

TEST_F(CacheContentTest, CorruptStoredUnitIsDetectedRefetchedAndHealed) {
  const UnitRef& u = units_[2];
  ASSERT_TRUE(cache_->ReadUnit(u, &source_).ok());
  FlipStoredByte(u.coff + 17);

  auto healed = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(healed.ok()) << healed.status().ToString();
  EXPECT_EQ(*healed, Expected(u));
  EXPECT_EQ(source_.requests(), 2);
  // The store holds good bytes again: offline reads work.
  auto offline = cache_->ReadUnit(u, nullptr);
  ASSERT_TRUE(offline.ok()) << offline.status().ToString();
  EXPECT_EQ(*offline, Expected(u));
  EXPECT_EQ(source_.requests(), 2);
}

TEST_F(CacheContentTest, CorruptStoredUnitIsNeverReturnedOffline) {
  const UnitRef& u = units_[2];
  ASSERT_TRUE(cache_->ReadUnit(u, &source_).ok());
  FlipStoredByte(u.coff);
  EXPECT_EQ(cache_->ReadUnit(u, nullptr).status().code(), Code::kUnavailable);
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(cache_->GetBlobStats(u.blob).units_present, 0u);
}

TEST_F(CacheContentTest, WrongBytesFromTheSourceFailAfterTwoFetchesAndPublishNothing) {
  source_.CorruptAlways(true);
  const UnitRef& u = units_[4];
  auto r = cache_->ReadUnit(u, &source_);
  ASSERT_EQ(r.status().code(), Code::kDigestMismatch);
  EXPECT_NE(r.status().message().find(u.sha256), std::string::npos) << r.status().message();
  EXPECT_EQ(source_.requests(), 2);
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(cache_->GetBlobStats(u.blob).units_present, 0u);
  EXPECT_EQ(cache_->ReadUnit(u, nullptr).status().code(), Code::kUnavailable);
}

TEST_F(CacheContentTest, OneBadFetchIsRetried) {
  source_.CorruptNext(1);
  auto r = cache_->ReadUnit(units_[5], &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(units_[5]));
  EXPECT_EQ(source_.requests(), 2);
}

TEST_F(CacheContentTest, SourceErrorIsPassedOnWithItsCode) {
  source_.FailWith(Status::Unauthorized("registry refused the credentials"));
  auto r = cache_->ReadUnit(units_[0], &source_);
  ASSERT_EQ(r.status().code(), Code::kUnauthorized);
  EXPECT_EQ(source_.requests(), 1);
  EXPECT_FALSE(Present(*cache_, units_[0]));
}

TEST_F(CacheContentTest, ConcurrentReadsOfOneUnitFetchOnce) {
  source_.SetDelay(std::chrono::milliseconds(200));
  const UnitRef& u = units_[6];
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      auto r = cache_->ReadUnit(u, &source_);
      if (r.ok() && *r == Expected(u)) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 16);
  EXPECT_EQ(source_.requests(), 1);
}

TEST_F(CacheContentTest, DifferentUnitsAreFetchedInParallel) {
  source_.SetRendezvous(4);
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto r = cache_->ReadUnit(units_[i], &source_);
      if (r.ok() && *r == Expected(units_[i])) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good, 4);
  EXPECT_EQ(source_.max_inside(), 4) << "unit fetches were serialized";
}

TEST_F(CacheContentTest, PutUnitVerifiesBeforePublishing) {
  const UnitRef& u = units_[8];
  std::string bad = Expected(u);
  bad[0] ^= 1;
  EXPECT_EQ(cache_->PutUnit(u, bad).code(), Code::kDigestMismatch);
  EXPECT_EQ(cache_->PutUnit(u, "short").code(), Code::kInvalidArgument);
  EXPECT_FALSE(Present(*cache_, u));
  ASSERT_TRUE(cache_->PutUnit(u, Expected(u)).ok());
  EXPECT_TRUE(Present(*cache_, u));
  auto r = cache_->ReadUnit(u, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(u));
}

TEST_F(CacheContentTest, TrustedReadServesPublishedBytesWithoutVerifyingThemAgain) {
  // A unit checked by a verifier (as eStargz units are): count the checks.
  std::atomic<int> checks{0};
  UnitRef u = units_[4];
  const std::string expected = Expected(u);
  u.sha256.clear();
  u.verify = [&](std::string_view bytes) {
    ++checks;
    return bytes == expected ? Status::Ok() : Status::DigestMismatch("not the unit");
  };
  ASSERT_TRUE(cache_->PutUnit(u, expected).ok());
  EXPECT_EQ(checks, 1);

  u.trust_store = true;
  auto trusted = cache_->ReadUnit(u, nullptr);
  ASSERT_TRUE(trusted.ok()) << trusted.status().ToString();
  EXPECT_EQ(*trusted, expected);
  EXPECT_EQ(checks, 1);

  // Without trust the store checks again, catches damage and heals from the source.
  FlipStoredByte(u.coff + 5);
  u.trust_store = false;
  auto checked = cache_->ReadUnit(u, &source_);
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(*checked, expected);
  EXPECT_EQ(source_.requests(), 1);
}

TEST_F(CacheContentTest, TrustedReadThroughADescriptorOfAReplacedFileVerifies) {
  // The parent keeps a descriptor of the partly filled blob file (unit 1 only).
  ASSERT_TRUE(cache_->ReadUnit(units_[1], &source_).ok());
  // Another process writes the whole blob and renames it over that file.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto child = Cache::Open(root_);
    if (!child.ok()) _exit(2);
    auto writer = (*child)->CreateBlobWriter(source_.digest(), kBlobSize);
    if (!writer.ok() || !(*writer)->Append(blob_).ok() || !(*writer)->Commit().ok()) _exit(3);
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) << wstatus;
  // Unit 5 is published (the blob is complete) but a hole in the old file: the trusted read
  // must notice that its descriptor is not the blob file and read the new one.
  for (int i : {5, 1}) {
    UnitRef u = units_[i];
    u.trust_store = true;
    auto r = cache_->ReadUnit(u, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, Expected(u)) << "unit " << i;
  }
}

TEST_F(CacheContentTest, MalformedUnitsAreRejected) {
  UnitRef u = units_[0];
  u.blob = "sha256:xyz";
  EXPECT_EQ(cache_->ReadUnit(u, &source_).status().code(), Code::kInvalidArgument);
  u = units_[0];
  u.clen = 0;
  EXPECT_EQ(cache_->ReadUnit(u, &source_).status().code(), Code::kInvalidArgument);
  u.clen = uint64_t{1} << 40;
  EXPECT_EQ(cache_->ReadUnit(u, &source_).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(Present(*cache_, u));
  EXPECT_EQ(source_.requests(), 0);
}

TEST_F(CacheContentTest, UncommittedBlobWriterLeavesNothingVisible) {
  {
    auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    ASSERT_TRUE((*writer)->Append(blob_).ok());
  }  // destroyed without Commit
  BlobStats stats = cache_->GetBlobStats(source_.digest());
  EXPECT_FALSE(stats.complete);
  EXPECT_EQ(stats.bytes_present, 0u);
  for (const UnitRef& u : units_) {
    EXPECT_EQ(cache_->ReadUnit(u, nullptr).status().code(), Code::kUnavailable);
  }
  // No temporary file is left behind.
  std::string dir = std::filesystem::path(BlobPath()).parent_path();
  if (std::filesystem::exists(dir)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      ADD_FAILURE() << "left behind: " << entry.path();
    }
  }
}

TEST_F(CacheContentTest, CommittedBlobServesEveryUnitOffline) {
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  for (uint64_t off = 0; off < kBlobSize; off += 77777) {
    ASSERT_TRUE((*writer)->Append(std::string_view(blob_).substr(off, 77777)).ok());
  }
  ASSERT_TRUE((*writer)->Commit().ok());

  BlobStats stats = cache_->GetBlobStats(source_.digest());
  EXPECT_TRUE(stats.complete);
  EXPECT_EQ(stats.size, kBlobSize);
  EXPECT_EQ(stats.bytes_present, kBlobSize);
  for (const UnitRef& u : units_) {
    EXPECT_TRUE(Present(*cache_, u));
    auto r = cache_->ReadUnit(u, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, Expected(u));
  }
  std::ifstream in(BlobPath(), std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(whole, blob_);
}

TEST_F(CacheContentTest, CommitReplacesAPartlyFilledBlobFile) {
  // Units already present (and a cached descriptor of the old file) stay readable.
  ASSERT_TRUE(cache_->ReadUnit(units_[1], &source_).ok());
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(blob_).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  for (const UnitRef& u : units_) {
    auto r = cache_->ReadUnit(u, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*r, Expected(u));
  }
}

TEST_F(CacheContentTest, BlobWriterRefusesWrongBytesOrSize) {
  std::string wrong = blob_;
  wrong[1000] ^= 1;
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(wrong).ok());
  EXPECT_EQ((*writer)->Commit().code(), Code::kDigestMismatch);
  EXPECT_FALSE((*writer)->Commit().ok());

  auto short_writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(short_writer.ok());
  ASSERT_TRUE((*short_writer)->Append(std::string_view(blob_).substr(0, 10)).ok());
  EXPECT_EQ((*short_writer)->Commit().code(), Code::kInvalidArgument);

  auto long_writer = cache_->CreateBlobWriter(source_.digest(), 10);
  ASSERT_TRUE(long_writer.ok());
  EXPECT_EQ((*long_writer)->Append(blob_).code(), Code::kInvalidArgument);

  EXPECT_FALSE(cache_->GetBlobStats(source_.digest()).complete);
  EXPECT_EQ(cache_->ReadUnit(units_[0], nullptr).status().code(), Code::kUnavailable);
}

// CheckDigest gives the verdict Commit would, without committing: a mismatch leaves the writer
// usable, so the caller can Restart and write the right bytes, which then commit.
TEST_F(CacheContentTest, CheckDigestBeforeCommitAllowsARestart) {
  std::string wrong = blob_;
  wrong[1000] ^= 1;
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(wrong).ok());
  Status check = (*writer)->CheckDigest();
  EXPECT_EQ(check.code(), Code::kDigestMismatch) << check.ToString();
  EXPECT_EQ((*writer)->Append("more").code(), Code::kInternal) << "no bytes after the verdict";
  EXPECT_FALSE(cache_->GetBlobStats(source_.digest()).complete);

  ASSERT_TRUE((*writer)->Restart().ok());
  ASSERT_TRUE((*writer)->Append(blob_).ok());
  EXPECT_TRUE((*writer)->CheckDigest().ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_TRUE(cache_->GetBlobStats(source_.digest()).complete);
  auto r = cache_->ReadUnit(units_[0], nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(units_[0]));
}

TEST_F(CacheContentTest, CorruptCompleteBlobLosesItsCompleteFlagAndHeals) {
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(blob_).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  FlipStoredByte(units_[3].coff + 5);

  auto r = cache_->ReadUnit(units_[3], &source_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(units_[3]));
  EXPECT_EQ(source_.requests(), 1);
  EXPECT_FALSE(cache_->GetBlobStats(source_.digest()).complete);
  EXPECT_TRUE(cache_->ReadUnit(units_[3], nullptr).ok());
}

TEST_F(CacheContentTest, RangePastTheEndOfACompleteBlobKeepsItComplete) {
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(blob_).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  UnitRef past = units_.back();
  past.clen += 10;
  EXPECT_FALSE(Present(*cache_, past));
  EXPECT_EQ(cache_->ReadUnit(past, nullptr).status().code(), Code::kUnavailable);
  EXPECT_EQ(cache_->ReadUnit(past, &source_).status().code(), Code::kNotFound);
  EXPECT_TRUE(cache_->GetBlobStats(source_.digest()).complete);
}

TEST_F(CacheContentTest, ReadsRecordTheBlobAccessTime) {
  int64_t before = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  ASSERT_TRUE(cache_->ReadUnit(units_[0], &source_).ok());
  cache_.reset();
  // The blobs record as docs/cache.md describes it: version, flags, size, last access.
  auto env = LmdbEnv::Open(root_ + "/index", root_);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  std::string hex(DigestHex(source_.digest())), record;
  ASSERT_TRUE((*env)->Read([&](LmdbTxn& txn) { return txn.Get(Db::kBlobs, hex, &record); }).ok());
  ASSERT_EQ(record.size(), 18u);
  EXPECT_EQ(record[0], 1);
  int64_t access = 0;
  for (int i = 10; i < 18; ++i) access = (access << 8) | static_cast<unsigned char>(record[i]);
  EXPECT_GE(access, before);
  EXPECT_LE(access, before + 60);
}

// Files of writers that died are known by their lock, which nobody holds: the longest is
// adopted and resumed after, the others removed. A live writer's file, and an empty one (a
// writer that may not have taken its lock yet), are left alone.
TEST_F(CacheContentTest, WriterAdoptsWhatADeadWriterLeftAndResumesAfterIt) {
  auto live = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(live.ok()) << live.status().ToString();
  EXPECT_EQ((*live)->resumed_bytes(), 0u);
  ASSERT_TRUE((*live)->Append(std::string_view(blob_).substr(0, 9000)).ok());
  const std::string shorter = BlobPath() + ".tmp.999999.0";
  const std::string longer = BlobPath() + ".tmp.999999.1";
  const std::string empty = BlobPath() + ".tmp.999999.2";
  std::ofstream(shorter) << std::string_view(blob_).substr(0, 1000);
  std::ofstream(longer) << std::string_view(blob_).substr(0, 5000);
  std::ofstream(empty) << "";

  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  EXPECT_EQ((*writer)->resumed_bytes(), 5000u);
  EXPECT_FALSE(std::filesystem::exists(shorter));
  EXPECT_FALSE(std::filesystem::exists(longer)) << "adopted under the new writer's name";
  EXPECT_TRUE(std::filesystem::exists(empty));
  EXPECT_EQ((*writer)->Append("x").code(), Code::kInternal) << "ReadResumed comes first";
  std::string replayed;
  ASSERT_TRUE((*writer)
                  ->ReadResumed([&](std::string_view bytes) {
                    replayed.append(bytes);
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(replayed, std::string_view(blob_).substr(0, 5000));
  ASSERT_TRUE((*writer)->Append(std::string_view(blob_).substr(5000)).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_TRUE(cache_->GetBlobStats(source_.digest()).complete);
  for (const UnitRef& u : units_) EXPECT_TRUE(cache_->ReadUnit(u, nullptr).ok());
  live->reset();  // its file goes with it
}

TEST_F(CacheContentTest, AdoptedBytesThatDoNotVerifyAreRestartedFromScratch) {
  std::filesystem::create_directories(std::filesystem::path(BlobPath()).parent_path());
  std::string wrong = blob_.substr(0, 4096);
  wrong[100] ^= 1;
  std::ofstream(BlobPath() + ".tmp.999999.0") << wrong;
  auto writer = cache_->CreateBlobWriter(source_.digest(), kBlobSize);
  ASSERT_TRUE(writer.ok()) << writer.status().ToString();
  ASSERT_EQ((*writer)->resumed_bytes(), 4096u);
  ASSERT_TRUE((*writer)->Restart().ok());
  EXPECT_EQ((*writer)->resumed_bytes(), 0u);
  ASSERT_TRUE((*writer)->Append(blob_).ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  std::ifstream in(BlobPath(), std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(whole, blob_);
}

TEST_F(CacheContentTest, TwoOpensOfOneRootSeeEachOthersWrites) {
  auto other = OpenCache();
  ASSERT_TRUE(other);
  ASSERT_TRUE(cache_->PutUnit(units_[0], Expected(units_[0])).ok());
  EXPECT_TRUE(Present(*other, units_[0]));
  auto r = other->ReadUnit(units_[0], nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(units_[0]));
  ASSERT_TRUE(other->PutReference("example.com/a:1", source_.digest()).ok());
  auto ref = cache_->GetReference("example.com/a:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->manifest_digest, source_.digest());
  // Closing one leaves the other working.
  other.reset();
  EXPECT_TRUE(cache_->ReadUnit(units_[1], &source_).ok());
}

TEST_F(CacheContentTest, ForkedChildWithItsOwnCacheSharesTheStore) {
  ASSERT_TRUE(cache_->PutReference("example.com/parent:1", source_.digest()).ok());
  ASSERT_TRUE(cache_->ReadUnit(units_[0], &source_).ok());

  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Never touch the parent's Cache here; leave with _exit so no destructor runs.
    auto child = Cache::Open(root_);
    if (!child.ok()) _exit(2);
    auto ref = (*child)->GetReference("example.com/parent:1");
    if (!ref.ok() || ref->manifest_digest != source_.digest()) _exit(3);
    auto parent_unit = (*child)->ReadUnit(units_[0], nullptr);
    if (!parent_unit.ok() || *parent_unit != Expected(units_[0])) _exit(4);
    test::FakeBlobSource child_source(blob_);
    auto fetched = (*child)->ReadUnit(units_[9], &child_source);
    if (!fetched.ok() || child_source.requests() != 1) _exit(5);
    if (!(*child)->PutDocument(Sha256Digest("{}"), "application/json", "{}").ok()) _exit(6);
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "child failed at step " << WEXITSTATUS(wstatus);

  auto r = cache_->ReadUnit(units_[9], nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, Expected(units_[9]));
  auto doc = cache_->GetDocument(Sha256Digest("{}"));
  ASSERT_TRUE(doc.ok()) << doc.status().ToString();
  EXPECT_EQ(doc->bytes, "{}");
}

TEST_F(CacheContentTest, ProcessesAndThreadsFillOneBlobAtOnce) {
  std::vector<pid_t> children;
  for (int c = 0; c < 3; ++c) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto child = Cache::Open(root_);
      if (!child.ok()) _exit(2);
      test::FakeBlobSource child_source(blob_);
      for (size_t i = 0; i < units_.size(); ++i) {
        const UnitRef& u = units_[(i + c * 4) % units_.size()];
        auto r = (*child)->ReadUnit(u, &child_source);
        if (!r.ok() || *r != Expected(u)) _exit(3);
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = 0; i < units_.size(); ++i) {
        const UnitRef& u = units_[(units_.size() - 1 - i + t) % units_.size()];
        auto r = cache_->ReadUnit(u, &source_);
        if (r.ok() && *r == Expected(u)) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  for (pid_t pid : children) {
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFEXITED(wstatus));
    EXPECT_EQ(WEXITSTATUS(wstatus), 0);
  }
  EXPECT_EQ(good, static_cast<int>(4 * units_.size()));
  EXPECT_EQ(cache_->GetBlobStats(source_.digest()).units_present, units_.size());
  std::ifstream in(BlobPath(), std::ios::binary);
  std::string whole((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(whole, blob_);
}

TEST_F(CacheContentTest, BlobStatsCountPublishedUnits) {
  for (int i : {0, 2, 10}) ASSERT_TRUE(cache_->ReadUnit(units_[i], &source_).ok());
  BlobStats stats = cache_->GetBlobStats(source_.digest());
  EXPECT_EQ(stats.units_present, 3u);
  EXPECT_EQ(stats.bytes_present, units_[0].clen + units_[2].clen + units_[10].clen);
  EXPECT_FALSE(stats.complete);
  // Another blob's units are not counted.
  EXPECT_EQ(cache_->GetBlobStats(Sha256Digest("other")).units_present, 0u);
}

}  // namespace
}  // namespace imgfs::cache
