// ContentReader on raw units through a real Cache in a temp dir, with a BlobSource that serves
// a blob from memory (and can be told to corrupt or slow down what it serves).
#include "fs/tree/content_reader.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "fs/tree/image_layers.h"
#include "tests/support/cache_store.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

// The mount's view of one layer.
std::shared_ptr<const ImageLayers> Layers(std::shared_ptr<const LayerIndex> layer) {
  return std::make_shared<const ImageLayers>(
      std::vector<std::shared_ptr<const LayerIndex>>{std::move(layer)});
}

constexpr uint64_t kUnitSize = 1000;
constexpr int kUnits = 6;

class ContentReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(42);
    blob_.resize(kUnitSize * kUnits);
    for (char& c : blob_) c = static_cast<char>(rng());
    source_ = std::make_unique<test::FakeBlobSource>(blob_,
                                                     test::FakeBlobSource::Serve::kAnyDigest);

    Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir_.Sub("cache"));
    ASSERT_TRUE(cache.ok()) << "cache::Cache::Open: " << cache.status().ToString();
    cache_ = std::move(cache).value();

    auto layer = std::make_shared<LayerIndex>();
    layer->blob_digest = Sha256Digest(blob_);
    layer->format = "tar";
    layer->blob_size = blob_.size();
    for (int i = 0; i < kUnits; ++i) {
      Unit u;
      u.codec = UnitCodec::kRaw;
      u.coff = i * kUnitSize;
      u.clen = kUnitSize;
      u.ulen = kUnitSize;
      u.sha256 = Sha256Digest(std::string_view(blob_).substr(u.coff, u.clen));
      layer->units.push_back(u);
    }
    // "big": 100 bytes from the end of unit 0, all of unit 1, a 300-byte hole, then 700 bytes
    // of unit 2 and 400 of unit 3: 2500 bytes over four units and a hole.
    Entry big;
    big.path = "big";
    big.size = 100 + 1000 + 300 + 700 + 400;
    big.chunks = {{0, 100, 0, 900},
                  {100, 1000, 1, 0},
                  {1100, 300, Chunk::kZeroUnit, 0},
                  {1400, 700, 2, 300},
                  {2100, 400, 3, 0}};
    expected_.assign(blob_, 900, 100);
    expected_.append(blob_, 1000, 1000);
    expected_.append(300, '\0');
    expected_.append(blob_, 2300, 700);
    expected_.append(blob_, 3000, 400);
    layer->entries.push_back(big);

    Entry empty;
    empty.path = "empty";
    layer->entries.push_back(empty);

    Entry gap;  // an index that breaks its contract: nothing covers [10, 20)
    gap.path = "gap";
    gap.size = 20;
    gap.chunks = {{0, 10, 4, 0}};
    layer->entries.push_back(gap);

    Entry dir;
    dir.path = "dir";
    dir.type = EntryType::kDirectory;
    layer->entries.push_back(dir);

    Entry last;  // all of unit 5
    last.path = "u5";
    last.size = kUnitSize;
    last.chunks = {{0, kUnitSize, 5, 0}};
    layer->entries.push_back(last);
    layer_ = layer;
  }

  // Read-ahead off: these tests count requests, which background fetches would blur.
  std::unique_ptr<ContentReader> MakeReader(size_t lru_bytes = 64 << 20) {
    return std::make_unique<ContentReader>(Layers(layer_), cache_.get(), source_.get(), lru_bytes,
                                           /*read_ahead_bytes=*/0);
  }

  std::string ReadAt(ContentReader& reader, uint32_t entry, uint64_t offset, size_t len) {
    std::string out(len, '\x55');
    Result<size_t> n = reader.Read(FileSource{0, entry, 0}, offset, len, out.data());
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok()) return "<error>";
    out.resize(*n);
    return out;
  }

  test::TempDir dir_{"content-reader"};
  std::string blob_;
  std::string expected_;
  std::unique_ptr<test::FakeBlobSource> source_;
  std::unique_ptr<cache::Cache> cache_;
  std::shared_ptr<const LayerIndex> layer_;
};

TEST_F(ContentReaderTest, ReadsWholeMultiChunkFileWithHole) {
  auto reader = MakeReader();
  EXPECT_EQ(ReadAt(*reader, 0, 0, 2500), expected_);
}

TEST_F(ContentReaderTest, ReadsAnyRangeCrossingChunkBoundaries) {
  auto reader = MakeReader();
  for (uint64_t off : {0, 1, 99, 100, 101, 1099, 1100, 1399, 1400, 2099, 2100, 2499}) {
    for (size_t len : {1, 2, 7, 300, 1001, 2500}) {
      std::string want = expected_.substr(off, len);
      ASSERT_EQ(ReadAt(*reader, 0, off, len), want) << "offset " << off << " len " << len;
    }
  }
}

TEST_F(ContentReaderTest, ReadOfSeveralMissingUnitsIsOneRequest) {
  auto reader = MakeReader();
  EXPECT_EQ(ReadAt(*reader, 0, 0, 2500), expected_);
  EXPECT_EQ(source_->requests(), 1);
  EXPECT_EQ(source_->bytes(), 4 * kUnitSize);
  EXPECT_EQ(reader->stats()[0].unit_decodes, 4u);
}

TEST_F(ContentReaderTest, ShortReadAtEndOfFileAndEmptyPastIt) {
  auto reader = MakeReader();
  EXPECT_EQ(ReadAt(*reader, 0, 2400, 4096), expected_.substr(2400));
  EXPECT_EQ(ReadAt(*reader, 0, 2500, 10), "");
  EXPECT_EQ(ReadAt(*reader, 0, 1u << 30, 10), "");
  EXPECT_EQ(ReadAt(*reader, 1, 0, 10), "");
}

TEST_F(ContentReaderTest, DecodedUnitsAreReusedAndHolesNeverFetch) {
  auto reader = MakeReader();
  for (int i = 0; i < 10; ++i) ReadAt(*reader, 0, 100 + i * 100, 100);  // all inside unit 1
  EXPECT_EQ(ReadAt(*reader, 0, 1100, 300), std::string(300, '\0'));
  std::vector<ContentReader::LayerStats> stats = reader->stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].blob_digest, layer_->blob_digest);
  EXPECT_EQ(stats[0].unit_decodes, 1u);
  EXPECT_EQ(stats[0].lru_hits, 9u);
  EXPECT_EQ(stats[0].bytes_read, 1300u);
  EXPECT_EQ(source_->requests(), 1);
}

TEST_F(ContentReaderTest, LruStaysWithinItsByteBound) {
  auto reader = MakeReader(2 * kUnitSize + 10);       // room for two units
  EXPECT_EQ(ReadAt(*reader, 0, 0, 2500), expected_);  // units 0..3
  EXPECT_LE(reader->lru_bytes_used(), 2 * kUnitSize + 10);
  EXPECT_EQ(reader->lru_bytes_used(), 2 * kUnitSize);
  uint64_t decodes = reader->stats()[0].unit_decodes;
  EXPECT_EQ(decodes, 4u);
  // Unit 3 is still held; unit 0 was evicted and is decoded again (from the store this time).
  ReadAt(*reader, 0, 2100, 10);
  EXPECT_EQ(reader->stats()[0].unit_decodes, decodes);
  ReadAt(*reader, 0, 0, 10);
  EXPECT_EQ(reader->stats()[0].unit_decodes, decodes + 1);
  // Units 0..3 came in one coalesced request; unit 0 was in the cache: no refetch.
  EXPECT_EQ(source_->requests(), 1);
  EXPECT_LE(reader->lru_bytes_used(), 2 * kUnitSize + 10);

  auto tiny = MakeReader(10);  // smaller than a unit: nothing is kept, reads still work
  EXPECT_EQ(ReadAt(*tiny, 4, 0, kUnitSize), blob_.substr(5 * kUnitSize));
  EXPECT_EQ(tiny->lru_bytes_used(), 0u);
}

TEST_F(ContentReaderTest, ConcurrentReadsOfOneUnitDecodeItOnce) {
  source_->SetDelay(std::chrono::milliseconds(200));
  auto reader = MakeReader();
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      std::string out(50, '\0');
      Result<size_t> n = reader->Read(FileSource{0, 0, 0}, 100 + i * 50, 50, out.data());
      if (n.ok() && *n == 50 && out == expected_.substr(100 + i * 50, 50)) ++good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 8);
  EXPECT_EQ(reader->stats()[0].unit_decodes, 1u);
  EXPECT_EQ(source_->requests(), 1);
}

// A real cache whose ReadUnit throws once `armed` says so: the exception a fetch can meet
// (bad_alloc of a huge unit, a bug) inside the reader's single flight.
class ThrowingCache : public cache::Cache {
 public:
  explicit ThrowingCache(cache::Cache* real) : real_(real) {}
  std::function<void()> before_read;  // runs first in every ReadUnit; may throw

  Result<std::string> ReadUnit(const cache::UnitRef& unit, BlobSource* source) override {
    if (before_read) before_read();
    return real_->ReadUnit(unit, source);
  }
  const std::string& root() const override { return real_->root(); }
  Status PutReference(std::string_view r, std::string_view d) override {
    return real_->PutReference(r, d);
  }
  Result<cache::ReferenceRecord> GetReference(std::string_view r) override {
    return real_->GetReference(r);
  }
  Result<std::vector<std::pair<std::string, cache::ReferenceRecord>>> ListReferences(
      std::string_view prefix) override {
    return real_->ListReferences(prefix);
  }
  Status DeleteReference(std::string_view r) override { return real_->DeleteReference(r); }
  Status PutDocument(std::string_view d, std::string_view t, std::string_view b) override {
    return real_->PutDocument(d, t, b);
  }
  Result<cache::Document> GetDocument(std::string_view d) override { return real_->GetDocument(d); }
  Status PutLayerIndex(std::string_view d, std::string_view s) override {
    return real_->PutLayerIndex(d, s);
  }
  Result<std::string> GetLayerIndex(std::string_view d) override { return real_->GetLayerIndex(d); }
  Status FetchUnits(const std::vector<cache::UnitRef>& u, BlobSource* s, uint64_t m) override {
    return real_->FetchUnits(u, s, m);
  }
  Status PutUnit(const cache::UnitRef& u, std::string_view b) override {
    return real_->PutUnit(u, b);
  }
  bool HasUnit(std::string_view b, uint64_t coff, uint64_t clen) override {
    return real_->HasUnit(b, coff, clen);
  }
  int FetchesInFlight() override { return real_->FetchesInFlight(); }
  Result<int> OpenDecodedFile(std::string_view d, std::string_view p, uint64_t n) override {
    return real_->OpenDecodedFile(d, p, n);
  }
  Result<bool> PutDecodedFile(std::string_view d, std::string_view p, uint64_t n,
                              const cache::DecodedFiles::Fill& fill) override {
    return real_->PutDecodedFile(d, p, n, fill);
  }
  Result<std::unique_ptr<cache::BlobWriter>> CreateBlobWriter(std::string_view d,
                                                              uint64_t size) override {
    return real_->CreateBlobWriter(d, size);
  }
  cache::BlobStats GetBlobStats(std::string_view d) override { return real_->GetBlobStats(d); }
  cache::Eviction& eviction() override { return real_->eviction(); }
  cache::Verifier& verifier() override { return real_->verifier(); }
  void SetSizeLimit(uint64_t max_bytes, cache::ReferencedBlobsFn referenced) override {
    real_->SetSizeLimit(max_bytes, std::move(referenced));
  }

 private:
  cache::Cache* const real_;
};

TEST_F(ContentReaderTest, FetchThatThrowsAnswersEveryWaitingReader) {
  ThrowingCache throwing(cache_.get());
  constexpr int kReaders = 6;
  ContentReader reader(Layers(layer_), &throwing, source_.get(), 64 << 20,
                       /*read_ahead_bytes=*/0);
  // The leader's fetch throws only once every other reader waits for it.
  std::atomic<bool> thrown{false};
  throwing.before_read = [&] {
    if (thrown.exchange(true)) return;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (reader.stats()[0].shared_waits < kReaders - 1 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    throw std::runtime_error("decoder ran out of memory");
  };
  std::vector<std::future<Result<size_t>>> reads;
  for (int i = 0; i < kReaders; ++i) {
    reads.push_back(std::async(std::launch::async, [&] {
      std::string out(50, '\0');
      return reader.Read(FileSource{0, 4, 0}, 0, 50, out.data());  // all of unit 5
    }));
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int errors = 0;
  for (auto& r : reads) {
    if (r.wait_until(until) != std::future_status::ready) {
      ADD_FAILURE() << "a reader is still blocked on a fetch that threw";
      std::fflush(nullptr);
      std::_Exit(1);
    }
    Result<size_t> n = r.get();
    if (!n.ok() && n.status().code() == Code::kInternal) ++errors;
  }
  EXPECT_EQ(errors, kReaders);
  EXPECT_EQ(reader.stats()[0].shared_waits, uint64_t{kReaders - 1});
  // Nothing lingers: the next read fetches and succeeds.
  throwing.before_read = nullptr;
  std::string out(kUnitSize, '\0');
  Result<size_t> n = reader.Read(FileSource{0, 4, 0}, 0, kUnitSize, out.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, blob_.substr(5 * kUnitSize, kUnitSize));
}

TEST_F(ContentReaderTest, BytesThatFailVerificationAreAnErrorNotACrash) {
  source_->CorruptAlways(true);
  auto reader = MakeReader();
  std::string out(100, '\0');
  Result<size_t> n = reader->Read(FileSource{0, 0, 0}, 0, 100, out.data());
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), Code::kDigestMismatch) << n.status().ToString();
  EXPECT_NE(n.status().message().find(layer_->blob_digest), std::string::npos);
  EXPECT_EQ(reader->stats()[0].failures, 1u);
  EXPECT_EQ(reader->lru_bytes_used(), 0u);

  // Nothing bad was kept: once the source behaves, the same read succeeds.
  source_->Heal();
  EXPECT_EQ(ReadAt(*reader, 0, 0, 100), expected_.substr(0, 100));
}

TEST_F(ContentReaderTest, OfflineMissIsUnavailable) {
  ContentReader reader(Layers(layer_), cache_.get(), /*source=*/nullptr);
  std::string out(10, '\0');
  Result<size_t> n = reader.Read(FileSource{0, 0, 0}, 0, 10, out.data());
  EXPECT_EQ(n.status().code(), Code::kUnavailable) << n.status().ToString();
  // A hole needs no bytes at all.
  n = reader.Read(FileSource{0, 0, 0}, 1200, 10, out.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, std::string(10, '\0'));
}

TEST_F(ContentReaderTest, BrokenIndexOrBadFileSourceIsAnError) {
  auto reader = MakeReader();
  std::string out(20, '\0');
  EXPECT_EQ(reader->Read(FileSource{0, 2, 0}, 0, 20, out.data()).status().code(), Code::kCorrupt);
  EXPECT_EQ(reader->Read(FileSource{0, 2, 0}, 5, 3, out.data()).value(), 3u);  // covered part
  EXPECT_EQ(reader->Read(FileSource{0, 3, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(reader->Read(FileSource{0, 99, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(reader->Read(FileSource{3, 0, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
}

// ---- eStargz-style layers: gzip-member units verified by the digests of their chunks ----

using test::GzipMember;

// A layer like the eStargz reader builds: one gzip member per unit, Unit::sha256 empty, each
// chunk carrying the sha256 of its decoded bytes. Units hold 150 000 decoded bytes from a
// 16-letter alphabet (about 90 KB compressed: more than the cache's coalescing gap).
//   entry 0 "a":     units 0..kTocFileUnits-1, one chunk each
//   entry 1 "pair1": the first 1000 bytes of the next unit; entry 2 "pair2": the rest of it
struct TocLayer {
  std::string blob;
  std::shared_ptr<LayerIndex> index;
  std::vector<std::string> files;  // contents of entries 0..2
};

constexpr int kTocFileUnits = 12;
constexpr uint64_t kTocUnitLen = 150000;

TocLayer MakeTocLayer() {
  TocLayer t;
  t.index = std::make_shared<LayerIndex>();
  t.files.resize(3);
  std::mt19937 rng(99);
  std::vector<std::string> decoded;
  for (int u = 0; u <= kTocFileUnits; ++u) {
    std::string d(kTocUnitLen, '\0');
    for (char& c : d) c = static_cast<char>('a' + rng() % 16);
    std::string member = GzipMember(d);
    Unit unit;
    unit.codec = UnitCodec::kGzipMember;
    unit.coff = t.blob.size();
    unit.clen = member.size();
    unit.ulen = d.size();
    t.index->units.push_back(unit);
    t.blob += member;
    decoded.push_back(std::move(d));
  }
  t.blob += std::string(51, '\0');  // where TOC and footer would be
  t.index->blob_digest = Sha256Digest(t.blob);
  t.index->format = "estargz";
  t.index->blob_size = t.blob.size();

  Entry a;
  a.path = "a";
  for (int u = 0; u < kTocFileUnits; ++u) {
    Chunk c;
    c.file_offset = a.size;
    c.length = kTocUnitLen;
    c.unit = u;
    c.sha256 = Sha256Digest(decoded[u]);
    a.chunks.push_back(c);
    a.size += kTocUnitLen;
    t.files[0] += decoded[u];
  }
  const std::string& shared = decoded[kTocFileUnits];
  Entry p1;
  p1.path = "pair1";
  p1.size = 1000;
  p1.chunks.push_back({0, 1000, kTocFileUnits, 0, Sha256Digest(shared.substr(0, 1000))});
  Entry p2;
  p2.path = "pair2";
  p2.size = kTocUnitLen - 1000;
  p2.chunks.push_back({0, p2.size, kTocFileUnits, 1000, Sha256Digest(shared.substr(1000))});
  t.files[1] = shared.substr(0, 1000);
  t.files[2] = shared.substr(1000);
  t.index->entries = {a, p1, p2};
  EXPECT_TRUE(ValidateLayerIndex(*t.index).ok()) << ValidateLayerIndex(*t.index).ToString();
  return t;
}

class TocReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    toc_ = MakeTocLayer();
    source_ = std::make_unique<test::FakeBlobSource>(toc_.blob,
                                                     test::FakeBlobSource::Serve::kAnyDigest);
    Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir_.Sub("cache"));
    ASSERT_TRUE(cache.ok()) << "cache::Cache::Open: " << cache.status().ToString();
    cache_ = std::move(cache).value();
  }

  std::unique_ptr<ContentReader> MakeReader(uint64_t read_ahead = 0, size_t lru = 64 << 20) {
    return std::make_unique<ContentReader>(Layers(toc_.index), cache_.get(), source_.get(), lru,
                                           read_ahead);
  }

  Result<std::string> Read(ContentReader& reader, uint32_t entry, uint64_t offset, size_t len) {
    std::string out(len, '\0');
    Result<size_t> n = reader.Read(FileSource{0, entry, 0}, offset, len, out.data());
    if (!n.ok()) return n.status();
    out.resize(*n);
    return out;
  }

  // Whether the cache holds unit `u`.
  bool Present(uint32_t u) {
    const Unit& unit = toc_.index->units[u];
    return cache_->HasUnit(toc_.index->blob_digest, unit.coff, unit.clen);
  }

  test::TempDir dir_{"content-reader-toc"};
  TocLayer toc_;
  std::unique_ptr<test::FakeBlobSource> source_;
  std::unique_ptr<cache::Cache> cache_;
};

TEST_F(TocReaderTest, UnitsAreVerifiedByChunkDigestsStoredAndDecodedOnce) {
  auto reader = MakeReader();
  Result<std::string> a = Read(*reader, 0, 0, toc_.files[0].size());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, toc_.files[0]);
  EXPECT_EQ(source_->requests(), 1) << "the units of one read come in one request";
  EXPECT_EQ(reader->stats()[0].unit_decodes, static_cast<uint64_t>(kTocFileUnits))
      << "the decode that verified a unit must also serve it";
  for (uint32_t u = 0; u < kTocFileUnits; ++u) EXPECT_TRUE(Present(u)) << u;

  // Two files in one unit: one fetch, one decode, both served.
  Result<std::string> p1 = Read(*reader, 1, 0, 1000);
  Result<std::string> p2 = Read(*reader, 2, 0, 1 << 20);
  ASSERT_TRUE(p1.ok() && p2.ok());
  EXPECT_EQ(*p1, toc_.files[1]);
  EXPECT_EQ(*p2, toc_.files[2]);
  EXPECT_EQ(source_->requests(), 2);
  EXPECT_EQ(reader->stats()[0].unit_decodes, static_cast<uint64_t>(kTocFileUnits) + 1);

  // A new reader (a new mount) is served from the store, offline, still verified.
  ContentReader offline(Layers(toc_.index), cache_.get(), nullptr);
  std::string out(5000, '\0');
  Result<size_t> n = offline.Read(FileSource{0, 0, 0}, 3 * kTocUnitLen - 100, 5000, out.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, toc_.files[0].substr(3 * kTocUnitLen - 100, 5000));
  EXPECT_EQ(offline.stats()[0].unit_decodes, 2u);
}

TEST_F(TocReaderTest, FlippedBitIsAnErrorStoresNothingAndHealsWithTheSource) {
  const Unit& unit = toc_.index->units[4];
  source_->FlipAt(unit.coff + unit.clen / 2);
  auto reader = MakeReader();
  Result<std::string> r = Read(*reader, 0, 4 * kTocUnitLen + 10, 100);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kDigestMismatch) << r.status().ToString();
  EXPECT_NE(r.status().message().find(toc_.index->blob_digest), std::string::npos);
  EXPECT_EQ(source_->requests(), 2) << "one fetch and one retry";
  EXPECT_FALSE(Present(4));
  EXPECT_EQ(reader->lru_bytes_used(), 0u);

  // A read of several units, one of them bad: the good ones are kept.
  r = Read(*reader, 0, 3 * kTocUnitLen, 3 * kTocUnitLen);
  EXPECT_EQ(r.status().code(), Code::kDigestMismatch) << r.status().ToString();
  EXPECT_TRUE(Present(3));
  EXPECT_FALSE(Present(4));
  EXPECT_TRUE(Present(5));

  source_->Heal();
  r = Read(*reader, 0, 4 * kTocUnitLen + 10, 100);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, toc_.files[0].substr(4 * kTocUnitLen + 10, 100));
  EXPECT_TRUE(Present(4));
}

TEST_F(TocReaderTest, StoredUnitDamagedOnDiskIsCaughtByItsDecodeAndHealed) {
  auto reader = MakeReader();
  ASSERT_TRUE(Read(*reader, 0, 0, toc_.files[0].size()).ok());
  const int before = source_->requests();
  // The store is trusted (no hashing on reads), but a gzip member's CRC32 still catches this.
  const Unit& unit = toc_.index->units[6];
  test::FlipByteInFile(test::StoredBlobPath(cache_->root(), toc_.index->blob_digest),
                       unit.coff + unit.clen / 2);
  auto fresh = MakeReader();  // a new mount: nothing decoded yet
  Result<std::string> r = Read(*fresh, 0, 6 * kTocUnitLen + 10, 100);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, toc_.files[0].substr(6 * kTocUnitLen + 10, 100));
  EXPECT_EQ(source_->requests(), before + 1) << "the damaged unit is fetched again";
  // Healed: served from the store offline.
  ContentReader offline(Layers(toc_.index), cache_.get(), nullptr);
  std::string out(100, '\0');
  ASSERT_TRUE(offline.Read(FileSource{0, 0, 0}, 6 * kTocUnitLen + 10, 100, out.data()).ok());
  EXPECT_EQ(out, toc_.files[0].substr(6 * kTocUnitLen + 10, 100));
}

TEST_F(TocReaderTest, WrongChunkDigestInTheIndexIsNeverServed) {
  auto bad = std::make_shared<LayerIndex>(*toc_.index);
  bad->entries[0].chunks[2].sha256 = Sha256Digest("something else");
  ContentReader reader(Layers(bad), cache_.get(), source_.get(), 64 << 20, 0);
  std::string out(100, '\0');
  Result<size_t> n = reader.Read(FileSource{0, 0, 0}, 2 * kTocUnitLen, 100, out.data());
  EXPECT_EQ(n.status().code(), Code::kDigestMismatch) << n.status().ToString();
  // Its neighbours are fine.
  n = reader.Read(FileSource{0, 0, 0}, kTocUnitLen, 100, out.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();

  // A chunk without a digest in a unit without one cannot be verified: refused too.
  auto unverifiable = std::make_shared<LayerIndex>(*toc_.index);
  unverifiable->entries[0].chunks[5].sha256.clear();
  EXPECT_EQ(ValidateLayerIndex(*unverifiable).code(), Code::kCorrupt);
  ContentReader reader2(Layers(unverifiable), cache_.get(), source_.get(), 64 << 20, 0);
  n = reader2.Read(FileSource{0, 0, 0}, 5 * kTocUnitLen, 100, out.data());
  EXPECT_FALSE(n.ok());
}

TEST_F(TocReaderTest, SixteenThreadsReadingRandomRangesFetchEachUnitOnce) {
  source_->SetDelay(std::chrono::milliseconds(20));
  auto reader = MakeReader(/*read_ahead=*/0, /*lru=*/3 * kTocUnitLen);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  const std::string& want = toc_.files[0];
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int k = 0; k < 25; ++k) {
        uint64_t off = rng() % want.size();
        size_t len = 1 + rng() % (3 * kTocUnitLen);
        std::string out(len, '\0');
        Result<size_t> n = reader->Read(FileSource{0, 0, 0}, off, len, out.data());
        size_t expect = std::min<uint64_t>(len, want.size() - off);
        if (!n.ok() || *n != expect || out.compare(0, expect, want, off, expect) != 0) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  std::vector<std::pair<uint64_t, uint64_t>> ranges = source_->ranges();
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    EXPECT_GE(ranges[i].first, ranges[i - 1].first + ranges[i - 1].second)
        << "bytes at " << ranges[i].first << " were fetched twice";
  }
  uint64_t fetched_units_bytes = 0;
  for (int u = 0; u < kTocFileUnits; ++u) fetched_units_bytes += toc_.index->units[u].clen;
  EXPECT_LE(source_->bytes(), fetched_units_bytes);
}

TEST_F(TocReaderTest, SequentialReadsFetchTheNextUnitsInTheBackground) {
  auto reader = MakeReader(/*read_ahead=*/6 * kTocUnitLen);
  const std::string& want = toc_.files[0];
  constexpr size_t kRead = 128 << 10;
  for (uint64_t off = 0; off < 2 * kRead; off += kRead) {
    Result<std::string> r = Read(*reader, 0, off, kRead);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(*r, want.substr(off, kRead));
  }
  EXPECT_GT(reader->stats()[0].readahead_units, 0u);
  // The window ends at file byte 2 * kRead + 6 units: exactly units 0..7 are present then
  // (0 and 1 read, 2..7 fetched ahead), none past it.
  reader->WaitIdle();
  for (uint32_t u = 0; u < kTocFileUnits; ++u) {
    EXPECT_EQ(Present(u), u <= 7) << "unit " << u;
  }
  // The read-ahead decoded what it verified: reading on needs neither fetch nor decode.
  int requests = source_->requests();
  uint64_t decodes = reader->stats()[0].unit_decodes;
  // (One byte off the sequence, so that this read starts no read-ahead of its own.)
  Result<std::string> r = Read(*reader, 0, 2 * kRead + 1, 4 * kTocUnitLen);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, want.substr(2 * kRead + 1, 4 * kTocUnitLen));
  EXPECT_EQ(source_->requests(), requests);
  EXPECT_EQ(reader->stats()[0].unit_decodes, decodes);
}

TEST_F(TocReaderTest, RandomReadsStartNoReadAhead) {
  auto reader = MakeReader(/*read_ahead=*/6 * kTocUnitLen);
  for (uint64_t off : {5 * kTocUnitLen, 1 * kTocUnitLen, 9 * kTocUnitLen}) {
    ASSERT_TRUE(Read(*reader, 0, off, 1000).ok());
  }
  reader->WaitIdle();
  EXPECT_EQ(reader->stats()[0].readahead_units, 0u);
  EXPECT_EQ(source_->requests(), 3);
}

TEST_F(TocReaderTest, ChunkDigestsAndPrefetchEndSurviveTheIndexFormat) {
  toc_.index->prefetch_end = toc_.index->units[3].coff;
  Result<LayerIndex> back = LayerIndex::Deserialize(toc_.index->Serialize());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->prefetch_end, toc_.index->prefetch_end);
  ASSERT_EQ(back->entries.size(), 3u);
  for (size_t e = 0; e < 3; ++e) {
    ASSERT_EQ(back->entries[e].chunks.size(), toc_.index->entries[e].chunks.size());
    for (size_t c = 0; c < back->entries[e].chunks.size(); ++c) {
      EXPECT_EQ(back->entries[e].chunks[c].sha256, toc_.index->entries[e].chunks[c].sha256);
    }
  }
  std::vector<std::vector<ChunkCheck>> checks = UnitChecks(*back);
  EXPECT_EQ(checks[kTocFileUnits].size(), 2u);

  LayerIndex past_end = *toc_.index;
  past_end.prefetch_end = past_end.blob_size + 1;
  EXPECT_EQ(ValidateLayerIndex(past_end).code(), Code::kCorrupt);
}

}  // namespace
}  // namespace imgfs::fs

namespace imgfs::fs {
namespace {

// A layer of small files, one raw unit each, in blob order: what a tree walk reads.
class WalkReadAheadTest : public ::testing::Test {
 protected:
  static constexpr int kFiles = 40;
  static constexpr uint64_t kFileSize = 1000;

  void SetUp() override {
    std::mt19937 rng(7);
    blob_.resize(kFiles * kFileSize);
    for (char& c : blob_) c = static_cast<char>(rng());
    source_ = std::make_unique<test::FakeBlobSource>(blob_,
                                                     test::FakeBlobSource::Serve::kAnyDigest);
    Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir_.Sub("cache"));
    ASSERT_TRUE(cache.ok()) << cache.status().ToString();
    cache_ = std::move(cache).value();
    auto layer = std::make_shared<LayerIndex>();
    layer->blob_digest = Sha256Digest(blob_);
    layer->format = "tar";
    layer->blob_size = blob_.size();
    for (int i = 0; i < kFiles; ++i) {
      Unit u;
      u.codec = UnitCodec::kRaw;
      u.coff = i * kFileSize;
      u.clen = u.ulen = kFileSize;
      u.sha256 = Sha256Digest(std::string_view(blob_).substr(u.coff, u.clen));
      layer->units.push_back(u);
      Entry e;
      e.path = "f" + std::to_string(i);
      e.size = kFileSize;
      e.chunks = {{0, kFileSize, static_cast<uint32_t>(i), 0}};
      layer->entries.push_back(e);
    }
    layer_ = layer;
    reader_ = std::make_unique<ContentReader>(Layers(layer_), cache_.get(), source_.get(), 64 << 20,
                                              /*read_ahead_bytes=*/8 * kFileSize);
  }

  void ReadWhole(uint32_t file) {
    std::string out(kFileSize, '\0');
    Result<size_t> n = reader_->Read(FileSource{0, file, kFileSize}, 0, kFileSize, out.data());
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ(out, blob_.substr(file * kFileSize, kFileSize));
  }

  bool Present(uint32_t unit) {
    const Unit& u = layer_->units[unit];
    return cache_->HasUnit(layer_->blob_digest, u.coff, u.clen);
  }

  test::TempDir dir_{"content-reader-walk"};
  std::string blob_;
  std::unique_ptr<test::FakeBlobSource> source_;
  std::unique_ptr<cache::Cache> cache_;
  std::shared_ptr<const LayerIndex> layer_;
  std::unique_ptr<ContentReader> reader_;
};

TEST_F(WalkReadAheadTest, FilesReadInBlobOrderFetchTheFollowingFilesAhead) {
  for (uint32_t f = 0; f < 3; ++f) ReadWhole(f);
  EXPECT_GT(reader_->stats()[0].readahead_units, 0u);
  // Files 0..2 were read; the next 8 (read_ahead_bytes) were fetched ahead; nothing else.
  reader_->WaitIdle();
  for (uint32_t u = 0; u < kFiles; ++u) EXPECT_EQ(Present(u), u <= 10) << "unit " << u;
  // Walking on is served from what was fetched ahead, with few and large requests. (Each
  // read waits for the read-ahead it started, so that no read races it to a unit.)
  for (uint32_t f = 3; f < kFiles; ++f) {
    ReadWhole(f);
    reader_->WaitIdle();
  }
  // Files 0..2 took one request each; then one request per read-ahead window, each asked
  // for once the walk reached the middle of the one before: none for the walk itself.
  EXPECT_EQ(source_->requests(), 8);
  EXPECT_EQ(reader_->stats()[0].readahead_units, static_cast<uint64_t>(kFiles - 3));
}

TEST_F(WalkReadAheadTest, OneFileOrFilesOutOfOrderStartNothing) {
  for (uint32_t f : {5u, 30u, 2u, 17u, 9u}) ReadWhole(f);
  reader_->WaitIdle();
  EXPECT_EQ(reader_->stats()[0].readahead_units, 0u);
  EXPECT_EQ(source_->requests(), 5);
}

}  // namespace
}  // namespace imgfs::fs
