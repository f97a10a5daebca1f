// Prefetcher on eStargz-style layers (gzip-member units verified by chunk digests) through a
// real Cache in a temp dir, with a BlobSource that counts requests and can damage bytes.
#include "fs/tree/prefetcher.h"

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/digest.h"
#include "cache/cache.h"
#include "fs/layer/decode.h"
#include "fs/layer/layer_builder.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/image_layers.h"
#include "fs/tree/layer_check.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/files.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

using test::GzipMember;

constexpr uint64_t kUnitLen = 100000;

// An eStargz-like layer of `units` gzip members, one file per unit, chunk digests only; the
// prioritized region ends where unit `landmark_units` starts (0 = no landmark).
std::shared_ptr<LayerIndex> MakeLayer(int units, int landmark_units, uint32_t seed,
                                      std::string* blob) {
  auto index = std::make_shared<LayerIndex>();
  std::mt19937 rng(seed);
  blob->clear();
  for (int u = 0; u < units; ++u) {
    std::string d(kUnitLen, '\0');
    for (char& c : d) c = static_cast<char>('a' + rng() % 16);
    std::string member = GzipMember(d);
    Unit unit;
    unit.codec = UnitCodec::kGzipMember;
    unit.coff = blob->size();
    unit.clen = member.size();
    unit.ulen = d.size();
    if (u == landmark_units && landmark_units > 0) index->prefetch_end = unit.coff;
    index->units.push_back(unit);
    *blob += member;
    Entry e;
    e.path = "f" + std::to_string(u);
    e.size = kUnitLen;
    e.chunks.push_back({0, kUnitLen, static_cast<uint32_t>(u), 0, Sha256Digest(d)});
    index->entries.push_back(e);
  }
  *blob += std::string(51, '\0');
  index->blob_digest = Sha256Digest(*blob);
  index->format = "estargz";
  index->blob_size = blob->size();
  EXPECT_TRUE(ValidateLayerIndex(*index).ok()) << ValidateLayerIndex(*index).ToString();
  return index;
}

class PrefetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string blob;
    // Layer 0: 10 units, the first 4 prioritized. Layer 1: 6 units, no landmark. Layer 2:
    // 8 units, the first 3 prioritized.
    layers_.push_back(MakeLayer(10, 4, 1, &blob));
    source_.Add(layers_.back()->blob_digest, blob);
    layers_.push_back(MakeLayer(6, 0, 2, &blob));
    source_.Add(layers_.back()->blob_digest, blob);
    layers_.push_back(MakeLayer(8, 3, 3, &blob));
    source_.Add(layers_.back()->blob_digest, blob);
    Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir_.Sub("cache"));
    ASSERT_TRUE(cache.ok()) << "cache::Cache::Open: " << cache.status().ToString();
    cache_ = std::move(cache).value();
  }

  bool Present(uint32_t layer, uint32_t unit) {
    const LayerIndex& index = *layers_[layer];
    const Unit& u = index.units[unit];
    return cache_->HasUnit(index.blob_digest, u.coff, u.clen);
  }

  test::TempDir dir_{"prefetcher"};
  std::shared_ptr<const ImageLayers> Image() const {
    return std::make_shared<const ImageLayers>(layers_);
  }

  std::vector<std::shared_ptr<const LayerIndex>> layers_;
  test::FakeBlobSource source_;
  std::unique_ptr<cache::Cache> cache_;
};

TEST_F(PrefetcherTest, LandmarkFetchesEachPrioritizedRegionInOneRequest) {
  Prefetcher prefetcher(Image(), cache_.get(), &source_);  // kLandmark is the default
  prefetcher.Start();
  Status s = prefetcher.Wait();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(source_.RequestsOf(layers_[0]->blob_digest), 1);
  EXPECT_EQ(source_.RequestsOf(layers_[1]->blob_digest), 0);
  EXPECT_EQ(source_.RequestsOf(layers_[2]->blob_digest), 1);
  for (uint32_t u = 0; u < 10; ++u) EXPECT_EQ(Present(0, u), u < 4) << "layer 0 unit " << u;
  for (uint32_t u = 0; u < 6; ++u) EXPECT_FALSE(Present(1, u)) << "layer 1 unit " << u;
  for (uint32_t u = 0; u < 8; ++u) EXPECT_EQ(Present(2, u), u < 3) << "layer 2 unit " << u;
  EXPECT_TRUE(prefetcher.stats().done);

  // Prefetched units are served offline, verified.
  ContentReader reader(Image(), cache_.get(), nullptr);
  std::string out(10, '\0');
  Result<size_t> n = reader.Read(FileSource{0, 2, 0}, 0, 10, out.data());
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(reader.Read(FileSource{0, 5, 0}, 0, 10, out.data()).status().code(),
            Code::kUnavailable);
}

TEST_F(PrefetcherTest, AllFetchesEveryUnitAfterTheLandmarks) {
  Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kAll);
  prefetcher.Start();
  Status s = prefetcher.Wait();
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (uint32_t l = 0; l < layers_.size(); ++l) {
    for (uint32_t u = 0; u < layers_[l]->units.size(); ++u) {
      EXPECT_TRUE(Present(l, u)) << "layer " << l << " unit " << u;
    }
  }
  // Landmark request + one for the rest (each layer is far below kAllRequestBytes).
  EXPECT_EQ(source_.RequestsOf(layers_[0]->blob_digest), 2);
  EXPECT_EQ(source_.RequestsOf(layers_[1]->blob_digest), 1);
  EXPECT_EQ(source_.RequestsOf(layers_[2]->blob_digest), 2);

  // A second run finds everything present.
  int before = source_.requests();
  Prefetcher again(Image(), cache_.get(), &source_, Prefetcher::Mode::kAll);
  again.Start();
  ASSERT_TRUE(again.Wait().ok());
  EXPECT_EQ(source_.requests(), before);
}

TEST(PrefetcherWaveTest, AllSendsItsRequestsSideBySide) {
  // One layer of about three requests' worth (kUnitLen of 16 letters gzips to ~60%).
  std::string blob;
  const int units = static_cast<int>(3 * Prefetcher::kAllRequestBytes / (kUnitLen / 2));
  auto layer = MakeLayer(units, 0, 4, &blob);
  test::FakeBlobSource source;
  source.Add(layer->blob_digest, blob);
  source.SetDelay(std::chrono::milliseconds(50));  // requests sent together overlap
  test::TempDir dir("prefetcher-wave");
  Result<std::unique_ptr<cache::Cache>> cache = cache::Cache::Open(dir.Sub("cache"));
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  Prefetcher prefetcher(
      std::make_shared<const ImageLayers>(std::vector<std::shared_ptr<const LayerIndex>>{layer}),
      cache->get(), &source, Prefetcher::Mode::kAll);
  prefetcher.Start();
  ASSERT_TRUE(prefetcher.Wait().ok());
  EXPECT_GE(source.requests(), 3);
  EXPECT_EQ(source.max_inside(), Prefetcher::kAllRequestsInFlight)
      << "the background pass sent its requests one after another";
  EXPECT_EQ(source.bytes(), blob.size() - 51);  // every unit once; the tail is no unit
}

TEST_F(PrefetcherTest, NoneFetchesNothingAndWaitReturnsAtOnce) {
  Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kNone);
  EXPECT_TRUE(prefetcher.Wait().ok()) << "Wait before Start";
  prefetcher.Start();
  EXPECT_TRUE(prefetcher.Wait().ok());
  EXPECT_EQ(source_.requests(), 0);

  Prefetcher offline(Image(), cache_.get(), nullptr, Prefetcher::Mode::kAll);
  offline.Start();
  EXPECT_TRUE(offline.Wait().ok());
}

TEST_F(PrefetcherTest, DamagedUnitIsReportedNotStoredAndTheRestGoesOn) {
  const Unit& bad = layers_[0]->units[2];
  source_.FlipAt(bad.coff + bad.clen / 2, layers_[0]->blob_digest);
  Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kLandmark);
  prefetcher.Start();
  Status s = prefetcher.Wait();
  EXPECT_EQ(s.code(), Code::kDigestMismatch) << s.ToString();
  EXPECT_NE(s.message().find(layers_[0]->blob_digest), std::string::npos) << s.ToString();
  EXPECT_FALSE(Present(0, 2));
  EXPECT_TRUE(Present(0, 1));
  EXPECT_TRUE(Present(0, 3));
  for (uint32_t u = 0; u < 3; ++u) EXPECT_TRUE(Present(2, u)) << "layer 2 unit " << u;
  EXPECT_EQ(prefetcher.stats().failures, 1u);
}

// The mount's own fetches: a layer of `units` units at a registry that holds every request
// (Block) until the test lets it go.
struct HeldFetches {
  explicit HeldFetches(int units)
      : layer(MakeLayer(units, 0, 9, &blob)),
        image(std::vector<std::shared_ptr<const LayerIndex>>{layer}) {
    source.Add(layer->blob_digest, blob);
    source.Block();
  }
  cache::UnitRef Unit(uint32_t u) const { return image.MakeUnitRef(0, u); }

  std::string blob;
  std::shared_ptr<LayerIndex> layer;
  const ImageLayers image;
  test::FakeBlobSource source;
};

TEST_F(PrefetcherTest, BackgroundPassPausesWhileOtherFetchesFillTheFetchThreads) {
  Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kAll);
  // The mount's own fetches, one per fetch thread, are held at their registry for as long as
  // the test wants while the background pass starts.
  HeldFetches held(cache::kFetchParallelism);
  std::vector<std::thread> foreground;
  for (uint32_t u = 0; u < cache::kFetchParallelism; ++u) {
    foreground.emplace_back(
        [&, u] { EXPECT_TRUE(cache_->FetchUnits({held.Unit(u)}, &held.source, kUnitLen).ok()); });
  }
  ASSERT_TRUE(held.source.WaitForInside(cache::kFetchParallelism))
      << "the foreground fetches never reached their source";
  prefetcher.Start();
  // Landmarks go at once; the rest waits for the foreground fetches.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!(Present(0, 3) && Present(2, 2)) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(Present(0, 3) && Present(2, 2)) << "landmarks were not fetched";
  EXPECT_EQ(source_.RequestsOf(layers_[1]->blob_digest), 0)
      << "the background pass did not wait for the foreground fetches";
  EXPECT_FALSE(Present(1, 0));
  EXPECT_FALSE(prefetcher.stats().done);
  held.source.Unblock();
  for (std::thread& t : foreground) t.join();
  ASSERT_TRUE(prefetcher.Wait().ok());
  EXPECT_TRUE(Present(1, 0));
}

TEST_F(PrefetcherTest, BackgroundPassGoesOnBesideOneOtherFetch) {
  Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kAll);
  // One read of the mount, held at its registry: the fetch threads are not full, so the
  // background pass does not wait for it.
  HeldFetches held(1);
  std::thread foreground(
      [&] { EXPECT_TRUE(cache_->FetchUnits({held.Unit(0)}, &held.source, kUnitLen).ok()); });
  ASSERT_TRUE(held.source.WaitForInside(1)) << "the foreground fetch never reached its source";
  prefetcher.Start();
  EXPECT_TRUE(prefetcher.Wait().ok());
  EXPECT_TRUE(Present(1, 0) && Present(1, 5)) << "the background pass waited for one fetch";
  held.source.Unblock();
  foreground.join();
}

TEST_F(PrefetcherTest, DestructionStopsTheWorkWithoutWaitingForIt) {
  source_.SetDelay(std::chrono::milliseconds(200));
  auto start = std::chrono::steady_clock::now();
  {
    Prefetcher prefetcher(Image(), cache_.get(), &source_, Prefetcher::Mode::kAll);
    prefetcher.Start();
    ASSERT_TRUE(source_.WaitForInside(1)) << "no landmark request started";
  }
  auto took = std::chrono::steady_clock::now() - start;
  // Landmarks in flight finish (one request each), the full pass never starts.
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_FALSE(Present(1, 0));
}

// A whole eStargz layer as the converter lays it out: a member of tar headers before the
// first chunk, the chunk members, and an empty member as the footer (standing in for TOC and
// footer). *decoded gets its uncompressed stream, whose sha256 is the layer's diff_id.
std::shared_ptr<LayerIndex> MakeWholeLayer(int units, uint32_t seed, std::string* blob,
                                           std::string* decoded) {
  std::string chunks;
  std::shared_ptr<LayerIndex> index = MakeLayer(units, 0, seed, &chunks);
  chunks.resize(chunks.size() - 51);  // MakeLayer's stand-in footer
  const std::string headers = "ustar headers of the directories " + std::to_string(seed);
  const std::string head = GzipMember(headers);
  *blob = head + chunks + GzipMember("");
  decoded->clear();
  *decoded += headers;
  for (Unit& u : index->units) {
    Result<std::string> d = DecodeUnit(u, std::string_view(chunks).substr(u.coff, u.clen));
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    if (d.ok()) *decoded += *d;
    u.coff += head.size();
  }
  index->blob_digest = Sha256Digest(*blob);
  index->blob_size = blob->size();
  EXPECT_TRUE(ValidateLayerIndex(*index).ok()) << ValidateLayerIndex(*index).ToString();
  return index;
}

class DiffIdCheckTest : public PrefetcherTest {
 protected:
  void SetUp() override {
    PrefetcherTest::SetUp();
    std::string blob;
    whole_ = MakeWholeLayer(5, 9, &blob, &decoded_);
    source_.Add(whole_->blob_digest, blob);
  }
  // layers_[1] and the whole layer, with the diff_id `whole_diff_id` for the latter.
  std::shared_ptr<const ImageLayers> Image(const std::string& whole_diff_id) const {
    return std::make_shared<const ImageLayers>(
        std::vector<std::shared_ptr<const LayerIndex>>{layers_[1], whole_},
        std::vector<std::string>{"", whole_diff_id});
  }
  Status RunAll(const std::shared_ptr<const ImageLayers>& image,
                Prefetcher::Mode mode = Prefetcher::Mode::kAll) {
    Prefetcher prefetcher(image, cache_.get(), &source_, mode);
    prefetcher.Start();
    return prefetcher.Wait();
  }
  LayerDescriptor Descriptor(const std::string& diff_id) const {
    LayerDescriptor d;
    d.digest = whole_->blob_digest;
    d.size = whole_->blob_size;
    d.diff_id = diff_id;
    return d;
  }

  std::shared_ptr<LayerIndex> whole_;
  std::string decoded_;
};

// --prefetch all and pull: once every unit of a TOC layer is in, its uncompressed stream is
// hashed and compared with the config's diff_id, once, and the outcome is recorded.
TEST_F(DiffIdCheckTest, WholeLayerMatchingItsDiffIdIsRecorded) {
  const std::string diff_id = Sha256Digest(decoded_);
  ASSERT_TRUE(cache_->PutLayerIndex(whole_->blob_digest, whole_->Serialize()).ok());
  Status s = RunAll(Image(diff_id));
  ASSERT_TRUE(s.ok()) << s.ToString();
  Result<LayerIndex> stored = LayerIndex::Deserialize(*cache_->GetLayerIndex(whole_->blob_digest));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->diff_id, diff_id);
  // The recorded verdict serves a later image without fetching: this one agrees ...
  source_.ResetCounts();
  EXPECT_TRUE(GetOrBuildLayerIndex(Descriptor(diff_id), cache_.get(), nullptr).ok());
  // ... another one naming the blob with another diff_id is refused, naming the layer.
  Result<LayerIndex> other = GetOrBuildLayerIndex(Descriptor(Sha256Digest("other")), cache_.get(),
                                                  nullptr);
  EXPECT_EQ(other.status().code(), Code::kDigestMismatch) << other.status().ToString();
  EXPECT_THAT(other.status().message(), ::testing::HasSubstr("layer " + whole_->blob_digest));
  // A second --prefetch all of an image whose index records it checks nothing again.
  auto checked = std::make_shared<LayerIndex>(*stored);
  Prefetcher again(
      std::make_shared<const ImageLayers>(std::vector<std::shared_ptr<const LayerIndex>>{checked},
                                          std::vector<std::string>{diff_id}),
      cache_.get(), &source_, Prefetcher::Mode::kAll);
  again.Start();
  EXPECT_TRUE(again.Wait().ok());
  EXPECT_EQ(source_.requests(), 0);
}

TEST_F(DiffIdCheckTest, MismatchFailsTheLayerNamingItAndItsReads) {
  const std::string wrong = Sha256Digest("not the stream");
  auto image = Image(wrong);
  Status s = RunAll(image);
  ASSERT_EQ(s.code(), Code::kDigestMismatch) << s.ToString();
  EXPECT_THAT(s.message(), ::testing::HasSubstr("layer " + whole_->blob_digest));
  EXPECT_THAT(s.message(), ::testing::HasSubstr("uncompresses to " + Sha256Digest(decoded_)));
  EXPECT_THAT(s.message(), ::testing::HasSubstr("diff_id for it is " + wrong));
  // Every unit is in the cache, but the reader serves nothing more of the layer; the other
  // layer reads as before.
  ContentReader reader(image, cache_.get(), &source_);
  std::string out(10, '\0');
  Result<size_t> bad = reader.Read(FileSource{1, 0, 0}, 0, 10, out.data());
  EXPECT_EQ(bad.status().code(), Code::kDigestMismatch) << bad.status().ToString();
  Result<size_t> good = reader.Read(FileSource{0, 0, 0}, 0, 10, out.data());
  EXPECT_TRUE(good.ok()) << good.status().ToString();
  // The verdict outlives the process: the index in the cache records what the stream is.
  Result<LayerIndex> later = GetOrBuildLayerIndex(Descriptor(wrong), cache_.get(), nullptr);
  EXPECT_EQ(later.status().code(), Code::kDigestMismatch) << later.status().ToString();
}

TEST_F(DiffIdCheckTest, NotCheckedUntilTheLayerIsWhole) {
  const std::string wrong = Sha256Digest("not the stream");
  // The landmark pass fetches part of a layer at most: nothing to check.
  EXPECT_TRUE(RunAll(Image(wrong), Prefetcher::Mode::kLandmark).ok());
  EXPECT_TRUE(cache_->GetLayerIndex(whole_->blob_digest).status().IsNotFound());
  // A transfer fault in the bytes no unit covers is not a verdict on the layer: the assembled
  // blob fails its digest, the layer stays readable, and the check runs again next time.
  source_.FlipAt(5, whole_->blob_digest);
  auto image = Image(Sha256Digest(decoded_));
  Status s = RunAll(image);
  EXPECT_EQ(s.code(), Code::kDigestMismatch) << s.ToString();
  EXPECT_THAT(s.message(), ::testing::HasSubstr("diff_id was not checked"));
  EXPECT_TRUE(image->LayerStatus(1).ok());
  source_.Heal();
  EXPECT_TRUE(RunAll(Image(Sha256Digest(decoded_))).ok());
}

TEST(PrefetcherModeTest, ParsesTheCommandLineNames) {
  EXPECT_EQ(Prefetcher::ParseMode("none").value(), Prefetcher::Mode::kNone);
  EXPECT_EQ(Prefetcher::ParseMode("landmark").value(), Prefetcher::Mode::kLandmark);
  EXPECT_EQ(Prefetcher::ParseMode("all").value(), Prefetcher::Mode::kAll);
  Result<Prefetcher::Mode> bad = Prefetcher::ParseMode("some");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("landmark, all or none"), std::string::npos);
}

}  // namespace
}  // namespace imgfs::fs
