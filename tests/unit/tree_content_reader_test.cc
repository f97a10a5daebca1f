// ContentReader on raw units through a real Cache in a temp dir, with a BlobSource that serves
// a blob from memory (and can be told to corrupt or slow down what it serves).
#include "fs/tree/content_reader.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "tests/support/files.h"

namespace imgfs::fs {
namespace {

class MemoryBlobSource : public cache::BlobSource {
 public:
  explicit MemoryBlobSource(std::string blob) : blob_(std::move(blob)) {}

  Status ReadRange(std::string_view /*digest*/, uint64_t offset, uint64_t length,
                   std::string* out) override {
    ++range_reads;
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (offset + length > blob_.size()) return Status::NotFound("range past the blob");
    std::string bytes = blob_.substr(offset, length);
    if (flip_bits && !bytes.empty()) bytes[0] ^= 0x40;
    out->append(bytes);
    return Status::Ok();
  }
  Status ReadAll(std::string_view /*digest*/,
                 const std::function<Status(std::string_view)>& sink) override {
    return sink(blob_);
  }

  std::atomic<int> range_reads{0};
  std::atomic<int> delay_ms{0};
  std::atomic<bool> flip_bits{false};

 private:
  std::string blob_;
};

constexpr uint64_t kUnitSize = 1000;
constexpr int kUnits = 6;

class ContentReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937 rng(42);
    blob_.resize(kUnitSize * kUnits);
    for (char& c : blob_) c = static_cast<char>(rng());
    source_ = std::make_unique<MemoryBlobSource>(blob_);

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

  std::unique_ptr<ContentReader> MakeReader(size_t lru_bytes = 64 << 20) {
    return std::make_unique<ContentReader>(std::vector<std::shared_ptr<const LayerIndex>>{layer_},
                                           cache_.get(), source_.get(), lru_bytes);
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
  std::unique_ptr<MemoryBlobSource> source_;
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
  EXPECT_EQ(source_->range_reads.load(), 1);
}

TEST_F(ContentReaderTest, LruStaysWithinItsByteBound) {
  auto reader = MakeReader(2 * kUnitSize + 10);  // room for two units
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
  EXPECT_EQ(source_->range_reads.load(), 4);  // the cache had it: no refetch
  EXPECT_LE(reader->lru_bytes_used(), 2 * kUnitSize + 10);

  auto tiny = MakeReader(10);  // smaller than a unit: nothing is kept, reads still work
  EXPECT_EQ(ReadAt(*tiny, 4, 0, kUnitSize), blob_.substr(5 * kUnitSize));
  EXPECT_EQ(tiny->lru_bytes_used(), 0u);
}

TEST_F(ContentReaderTest, ConcurrentReadsOfOneUnitDecodeItOnce) {
  source_->delay_ms = 200;
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
  EXPECT_EQ(source_->range_reads.load(), 1);
}

TEST_F(ContentReaderTest, BytesThatFailVerificationAreAnErrorNotACrash) {
  source_->flip_bits = true;
  auto reader = MakeReader();
  std::string out(100, '\0');
  Result<size_t> n = reader->Read(FileSource{0, 0, 0}, 0, 100, out.data());
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), Code::kDigestMismatch) << n.status().ToString();
  EXPECT_NE(n.status().message().find(layer_->blob_digest), std::string::npos);
  EXPECT_EQ(reader->stats()[0].failures, 1u);
  EXPECT_EQ(reader->lru_bytes_used(), 0u);

  // Nothing bad was kept: once the source behaves, the same read succeeds.
  source_->flip_bits = false;
  EXPECT_EQ(ReadAt(*reader, 0, 0, 100), expected_.substr(0, 100));
}

TEST_F(ContentReaderTest, OfflineMissIsUnavailable) {
  ContentReader reader({layer_}, cache_.get(), /*source=*/nullptr);
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
  EXPECT_EQ(reader->Read(FileSource{0, 2, 0}, 0, 20, out.data()).status().code(),
            Code::kCorrupt);
  EXPECT_EQ(reader->Read(FileSource{0, 2, 0}, 5, 3, out.data()).value(), 3u);  // covered part
  EXPECT_EQ(reader->Read(FileSource{0, 3, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(reader->Read(FileSource{0, 99, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(reader->Read(FileSource{3, 0, 0}, 0, 20, out.data()).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace imgfs::fs
