// The streaming indexing pass end to end: real tars (GNU tar), real gzip (zlib and gzip -9),
// a real cache on a temp dir, and reads of file ranges through the units it records.
#include "fs/layer/stream_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "base/digest.h"
#include "cache/cache.h"
#include "fs/layer/decode.h"
#include "fs/layer/layer_builder.h"
#include "tests/support/fake_blob_source.h"
#include "tests/support/test_blobs.h"

namespace imgfs::fs {
namespace {

namespace stdfs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = stdfs::temp_directory_path() /
            ("imgfs-layer-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    stdfs::remove_all(path_);
    stdfs::create_directories(path_);
  }
  ~TempDir() { stdfs::remove_all(path_); }
  const stdfs::path& path() const { return path_; }

 private:
  stdfs::path path_;
};

std::string ReadFile(const stdfs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void WriteFile(const stdfs::path& p, const std::string& data) {
  stdfs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << data;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::string RandomText(std::mt19937_64& rng, size_t n) {
  static const char* kWords[] = {"layer ", "index ", "gzip ", "checkpoint ", "window ",
                                 "tar\n",  "the ",   "of ",   "registry ",   "0123456789 "};
  std::string s;
  while (s.size() < n) s += kWords[rng() % 10];
  s.resize(n);
  return s;
}

// A tree with random (incompressible) and text (compressible) files of a few MiB in total,
// small files, an empty file, a long name, a symlink and a hard link.
void MakeTree(const stdfs::path& root, uint64_t seed) {
  std::mt19937_64 rng(seed);
  WriteFile(root / "bin/random1", RandomBytes(rng, 1500000));
  WriteFile(root / "usr/share/doc/text1", RandomText(rng, 2500000));
  WriteFile(root / "bin/random2", RandomBytes(rng, 700001));
  for (int i = 0; i < 40; ++i) {
    WriteFile(root / ("etc/small" + std::to_string(i)), RandomText(rng, 1 + rng() % 5000));
  }
  WriteFile(root / "etc/empty", "");
  WriteFile(root / "var" / std::string(150, 'n') / "deep", RandomText(rng, 3000));
  WriteFile(root / "usr/share/doc/text2", RandomText(rng, 1200000) + RandomBytes(rng, 300000));
  stdfs::create_symlink("../bin/random1", root / "etc/link");
  stdfs::create_hard_link(root / "etc/small1", root / "etc/hardlink");
}

std::string MakeTar(const stdfs::path& root, const stdfs::path& out) {
  std::string cmd = "tar --format=pax --sort=name -C " + root.string() + " -cf " + out.string() +
                    " .";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << "GNU tar is needed (scripts/setup): " << cmd;
  return ReadFile(out);
}

// gzip members of `piece` input bytes each (one member when piece is 0).
std::string Gzip(std::string_view data, size_t piece = 0, int level = 6) {
  if (piece == 0) piece = data.size() ? data.size() : 1;
  std::string out;
  size_t pos = 0;
  do {
    std::string_view part = data.substr(pos, piece);
    pos += part.size();
    out += test::GzipMember(part, level);
  } while (pos < data.size());
  return out;
}

LayerDescriptor Describe(const std::string& blob, std::string media_type) {
  LayerDescriptor d;
  d.media_type = std::move(media_type);
  d.digest = Sha256Digest(blob);
  d.size = blob.size();
  return d;
}

std::unique_ptr<cache::Cache> OpenCache(const stdfs::path& root) {
  auto c = cache::Cache::Open(root.string());
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

// Reads file bytes through the index the way the tree does: chunks -> units -> decode.
class UnitReader {
 public:
  UnitReader(const LayerIndex& index, std::string_view blob) : index_(index), blob_(blob) {}

  const std::string& Decoded(uint32_t u) {
    auto it = decoded_.find(u);
    if (it != decoded_.end()) return it->second;
    const Unit& unit = index_.units[u];
    std::string_view compressed = blob_.substr(unit.coff, unit.clen);
    EXPECT_EQ(Sha256Digest(compressed), unit.sha256) << "unit " << u;
    Result<std::string> out = DecodeUnit(unit, compressed);
    EXPECT_TRUE(out.ok()) << "unit " << u << ": " << out.status().ToString();
    std::string bytes = out.ok() ? std::move(out).value() : std::string();
    EXPECT_EQ(bytes.size(), unit.ulen);
    return decoded_[u] = std::move(bytes);
  }

  std::string Read(const Entry& e, uint64_t off, uint64_t len) {
    std::string out;
    for (const Chunk& c : e.chunks) {
      uint64_t start = std::max(off, c.file_offset);
      uint64_t end = std::min(off + len, c.file_offset + c.length);
      if (start >= end) continue;
      const std::string& d = Decoded(c.unit);
      out += d.substr(c.unit_offset + (start - c.file_offset), end - start);
    }
    return out;
  }

 private:
  const LayerIndex& index_;
  std::string_view blob_;
  std::map<uint32_t, std::string> decoded_;
};

// Every regular file read whole and at random ranges equals the file on disk.
void ExpectContentMatches(const LayerIndex& index, std::string_view blob, const stdfs::path& root,
                          int random_reads = 300) {
  UnitReader reader(index, blob);
  std::vector<const Entry*> files;
  std::set<std::string> paths;
  for (const Entry& e : index.entries) {
    paths.insert(e.path);
    if (e.type != EntryType::kRegular) continue;
    files.push_back(&e);
    std::string want = ReadFile(root / e.path);
    ASSERT_EQ(e.size, want.size()) << e.path;
    ASSERT_TRUE(reader.Read(e, 0, e.size) == want) << "content of " << e.path << " differs";
  }
  EXPECT_TRUE(paths.count("bin/random1"));
  EXPECT_TRUE(paths.count("var/" + std::string(150, 'n') + "/deep"));
  EXPECT_TRUE(paths.count("etc/link"));
  EXPECT_TRUE(paths.count("etc/hardlink"));
  std::mt19937_64 rng(99);
  for (int i = 0; i < random_reads; ++i) {
    const Entry& e = *files[rng() % files.size()];
    if (e.size == 0) continue;
    uint64_t off = rng() % e.size;
    uint64_t len = 1 + rng() % std::min<uint64_t>(e.size - off, 3 << 20);
    std::string want = ReadFile(root / e.path).substr(off, len);
    ASSERT_TRUE(reader.Read(e, off, len) == want) << e.path << " @" << off << "+" << len;
  }
}

class StreamIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MakeTree(tree_.path(), 1);
    tar_ = MakeTar(tree_.path(), work_.path() / "layer.tar");
    ASSERT_GT(tar_.size(), 6u << 20);
    cache_ = OpenCache(work_.path() / "cache");
    ASSERT_NE(cache_, nullptr);
  }

  TempDir tree_;
  TempDir work_;
  std::string tar_;
  std::unique_ptr<cache::Cache> cache_;
  test::FakeBlobSource source_;
};

TEST_F(StreamIndexTest, SingleMemberGzipWithManyCheckpoints) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  StreamIndexOptions options;
  options.span = 256 << 10;
  Result<LayerIndex> index = BuildStreamedLayerIndex(d, cache_.get(), &source_, options);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->format, "gzip");
  EXPECT_EQ(index->blob_digest, d.digest);
  EXPECT_EQ(index->blob_size, blob.size());
  ASSERT_GT(index->units.size(), 20u);
  EXPECT_TRUE(index->units[0].at_member_start);
  EXPECT_EQ(index->units[0].coff, 0u);
  int with_bits = 0;
  uint64_t total_ulen = 0;
  for (size_t i = 0; i < index->units.size(); ++i) {
    const Unit& u = index->units[i];
    EXPECT_EQ(u.codec, UnitCodec::kZran);
    total_ulen += u.ulen;
    if (u.bits) ++with_bits;
    if (i > 0) {
      EXPECT_FALSE(u.at_member_start);
      EXPECT_EQ(u.window.size(), 32768u) << i;
      const Unit& prev = index->units[i - 1];
      // Ranges tile the blob, sharing at most the byte that holds a checkpoint's bits.
      EXPECT_EQ(prev.coff + prev.clen, u.coff + (u.bits ? 1 : 0)) << i;
    }
  }
  EXPECT_GT(with_bits, 0);
  EXPECT_EQ(total_ulen, tar_.size());
  const Unit& last = index->units.back();
  EXPECT_EQ(last.coff + last.clen, blob.size());
  ExpectContentMatches(*index, blob, tree_.path());

  // The pass kept the blob and the index: both readable offline.
  EXPECT_TRUE(cache_->GetBlobStats(d.digest).complete);
  Result<std::string> stored = cache_->GetLayerIndex(d.digest);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  Result<LayerIndex> back = LayerIndex::Deserialize(*stored);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->units.size(), index->units.size());
  const Unit& u = index->units[index->units.size() / 2];
  Result<std::string> unit_bytes = cache_->ReadUnit(
      cache::UnitRef{d.digest, u.coff, u.clen, u.sha256}, nullptr);
  ASSERT_TRUE(unit_bytes.ok()) << unit_bytes.status().ToString();
  EXPECT_TRUE(*unit_bytes == blob.substr(u.coff, u.clen));
}

TEST_F(StreamIndexTest, ConcatenatedMembersAndZeroPadding) {
  // Members that end in the middle of deflate-sized spans, an empty member, and padding.
  std::string blob = Gzip(tar_.substr(0, 3000000), 700000, 1) + Gzip("") +
                     Gzip(tar_.substr(3000000), 1234567, 9) + std::string(4096, '\0');
  LayerDescriptor d = Describe(blob, "application/vnd.docker.image.rootfs.diff.tar.gzip");
  source_.Add(d.digest, blob);
  StreamIndexOptions options;
  options.span = 300 << 10;
  options.min_member_span = 100 << 10;
  Result<LayerIndex> index = BuildStreamedLayerIndex(d, cache_.get(), &source_, options);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  int member_starts = 0;
  for (const Unit& u : index->units) member_starts += u.at_member_start;
  EXPECT_GE(member_starts, 5);
  EXPECT_EQ(index->units.back().coff + index->units.back().clen, blob.size());
  ExpectContentMatches(*index, blob, tree_.path());

  // Units that span member boundaries (every member start checkpointed only after 100 KiB)
  // still decode: with a huge min_member_span no member start becomes a checkpoint.
  TempDir cache2_dir;
  auto cache2 = OpenCache(cache2_dir.path());
  options.min_member_span = uint64_t{1} << 40;
  Result<LayerIndex> spanning = BuildStreamedLayerIndex(d, cache2.get(), &source_, options);
  ASSERT_TRUE(spanning.ok()) << spanning.status().ToString();
  EXPECT_EQ(std::count_if(spanning->units.begin(), spanning->units.end(),
                          [](const Unit& u) { return u.at_member_start; }),
            1);
  ExpectContentMatches(*spanning, blob, tree_.path());
}

TEST_F(StreamIndexTest, RealGzipDashNineThroughGetOrBuild) {
  stdfs::path tar_path = work_.path() / "layer.tar";
  std::string cmd = "gzip -9 -k -f " + tar_path.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "gzip is needed (scripts/setup)";
  std::string blob = ReadFile(tar_path.string() + ".gz");
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);

  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_GE(index->units.size(), 6u);  // ~1 MiB spans over ~8 MiB
  ExpectContentMatches(*index, blob, tree_.path());
  EXPECT_EQ(source_.read_alls(), 1);

  // Cached: no second pass, and it works offline.
  Result<LayerIndex> again = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(source_.read_alls(), 1);
  Result<LayerIndex> offline = GetOrBuildLayerIndex(d, cache_.get(), nullptr);
  ASSERT_TRUE(offline.ok()) << offline.status().ToString();
  EXPECT_EQ(offline->entries.size(), index->entries.size());
}

TEST_F(StreamIndexTest, UncompressedTarGetsRawUnits) {
  LayerDescriptor d = Describe(tar_, "application/vnd.oci.image.layer.v1.tar");
  source_.Add(d.digest, tar_);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->format, "tar");
  ASSERT_EQ(index->units.size(), (tar_.size() + (1 << 20) - 1) >> 20);
  for (size_t i = 0; i < index->units.size(); ++i) {
    EXPECT_EQ(index->units[i].codec, UnitCodec::kRaw);
    EXPECT_EQ(index->units[i].coff, i << 20);
  }
  ExpectContentMatches(*index, tar_, tree_.path());
}

TEST_F(StreamIndexTest, MislabelledMediaTypeFollowsTheMagic) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar");
  source_.Add(d.digest, blob);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->format, "gzip");
}

TEST_F(StreamIndexTest, EstargzAnnotationWithoutUsableTocFallsBackToFullPass) {
  std::string blob = Gzip(tar_);  // plain gzip: no eStargz footer
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  d.annotations["containerd.io/snapshot/stargz/toc.digest"] = Sha256Digest("toc");
  source_.Add(d.digest, blob);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(index->format, "gzip");
  EXPECT_EQ(source_.read_alls(), 1);
  ExpectContentMatches(*index, blob, tree_.path(), 20);
}

TEST_F(StreamIndexTest, DigestMismatchCommitsNothing) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  std::string tampered = blob;
  tampered[tampered.size() / 2] ^= 0x40;
  source_.Add(d.digest, tampered);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_FALSE(index.ok());
  // A flipped bit usually breaks inflate too; the digest is still what gets reported.
  EXPECT_EQ(index.status().code(), Code::kDigestMismatch) << index.status().ToString();
  EXPECT_FALSE(cache_->GetBlobStats(d.digest).complete);
  EXPECT_EQ(cache_->GetBlobStats(d.digest).units_present, 0u);
  EXPECT_TRUE(cache_->GetLayerIndex(d.digest).status().IsNotFound());
}

// A transfer that died (a killed pull) left the first half of the blob in the cache: the pass
// reads it back and fetches only the rest, by range. A damaged leftover makes the whole fail
// to verify, and the blob is then fetched whole once more.
TEST_F(StreamIndexTest, ResumesAfterWhatADeadTransferLeft) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  const std::string hex(DigestHex(d.digest));
  for (bool damaged : {false, true}) {
    SCOPED_TRACE(damaged ? "damaged leftover" : "good leftover");
    const stdfs::path root = work_.path() / (damaged ? "cache-damaged" : "cache-resumed");
    auto cache = OpenCache(root);
    ASSERT_NE(cache, nullptr);
    const stdfs::path dir = root / "blobs" / "sha256" / hex.substr(0, 2);
    stdfs::create_directories(dir);
    std::string left = blob.substr(0, blob.size() / 2);
    if (damaged) left[1000] ^= 0x40;
    std::ofstream(dir / (hex + ".tmp.999999.0"), std::ios::binary) << left;
    const int read_alls = source_.read_alls();
    const uint64_t bytes = source_.bytes();

    Result<LayerIndex> index = BuildStreamedLayerIndex(d, cache.get(), &source_);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    EXPECT_TRUE(cache->GetBlobStats(d.digest).complete);
    EXPECT_EQ(ReadFile(dir / hex), blob);
    if (damaged) {
      EXPECT_EQ(source_.read_alls(), read_alls + 1) << "fetched whole again";
    } else {
      EXPECT_EQ(source_.read_alls(), read_alls);
      EXPECT_EQ(source_.bytes() - bytes, blob.size() - left.size());
    }
    std::vector<std::string> left_over;
    for (const auto& e : stdfs::directory_iterator(dir)) left_over.push_back(e.path().string());
    EXPECT_EQ(left_over.size(), 1u) << "only the blob file stays";
  }
}

TEST_F(StreamIndexTest, WrongSizeIsCorrupt) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  d.size -= 1;
  source_.Add(d.digest, blob);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  EXPECT_EQ(index.status().code(), Code::kCorrupt) << index.status().ToString();
  EXPECT_TRUE(cache_->GetLayerIndex(d.digest).status().IsNotFound());
}

TEST_F(StreamIndexTest, TruncatedOrDamagedStreamsAreCorrupt) {
  std::string blob = Gzip(tar_);
  // The descriptor matches the damaged bytes: the damage is the blob's own.
  std::string truncated = blob.substr(0, blob.size() / 2);
  LayerDescriptor d = Describe(truncated, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, truncated);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  EXPECT_EQ(index.status().code(), Code::kCorrupt) << index.status().ToString();
  EXPECT_FALSE(cache_->GetBlobStats(d.digest).complete);

  std::string garbage_tail = blob + "garbage";
  LayerDescriptor g = Describe(garbage_tail, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(g.digest, garbage_tail);
  EXPECT_EQ(GetOrBuildLayerIndex(g, cache_.get(), &source_).status().code(), Code::kCorrupt);

  std::string not_a_tar = Gzip(RandomText(*std::make_unique<std::mt19937_64>(5), 100000));
  LayerDescriptor n = Describe(not_a_tar, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(n.digest, not_a_tar);
  Result<LayerIndex> r = GetOrBuildLayerIndex(n, cache_.get(), &source_);
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().ToString();
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("offset"));
}

TEST_F(StreamIndexTest, CorruptCachedIndexIsRebuilt) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  ASSERT_TRUE(cache_->PutLayerIndex(d.digest, "IMGFSLIX garbage").ok());
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_EQ(source_.read_alls(), 1);
  Result<std::string> stored = cache_->GetLayerIndex(d.digest);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(LayerIndex::Deserialize(*stored).ok());
}

TEST_F(StreamIndexTest, OfflineWithoutCachedIndexIsUnavailable) {
  LayerDescriptor d = Describe(tar_, "application/vnd.oci.image.layer.v1.tar");
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), nullptr);
  EXPECT_EQ(index.status().code(), Code::kUnavailable);
  EXPECT_THAT(index.status().message(), ::testing::HasSubstr("offline"));
  EXPECT_THAT(index.status().message(), ::testing::HasSubstr(d.digest));
}

TEST_F(StreamIndexTest, ConcurrentRequestsShareOneBuild) {
  std::string blob = Gzip(tar_, 0, 1);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  source_.SetDelay(std::chrono::milliseconds(300));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      if (GetOrBuildLayerIndex(d, cache_.get(), &source_).ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 4);
  EXPECT_EQ(source_.read_alls(), 1);
}

TEST_F(StreamIndexTest, UnsupportedLayers) {
  std::string zstd(ZSTD_compressBound(tar_.size()), '\0');
  zstd.resize(ZSTD_compress(zstd.data(), zstd.size(), tar_.data(), tar_.size(), 1));
  LayerDescriptor z = Describe(zstd, "application/vnd.oci.image.layer.v1.tar+zstd");
  source_.Add(z.digest, zstd);
  Result<LayerIndex> r = GetOrBuildLayerIndex(z, cache_.get(), &source_);
  EXPECT_EQ(r.status().code(), Code::kUnsupported) << r.status().ToString();
  EXPECT_THAT(r.status().message(), ::testing::HasSubstr("zstd"));

  LayerDescriptor b = Describe(tar_, "application/vnd.oci.image.layer.v1.tar+bzip2");
  source_.Add(b.digest, tar_);
  EXPECT_EQ(GetOrBuildLayerIndex(b, cache_.get(), &source_).status().code(), Code::kUnsupported);
}

TEST(StreamIndexerTest, EmptyAndTinyBlobs) {
  for (std::string blob : {std::string(), std::string(1024, '\0'), std::string("ab")}) {
    StreamIndexer indexer;
    ASSERT_TRUE(indexer.Feed(blob).ok());
    Result<LayerIndex> index = indexer.Finish();
    if (blob == "ab") {
      EXPECT_EQ(index.status().code(), Code::kCorrupt);
      continue;
    }
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    EXPECT_TRUE(index->entries.empty());
    EXPECT_EQ(indexer.blob_digest(), Sha256Digest(blob));
  }
}

TEST(StreamIndexerTest, DamagedGzipNeverCrashes) {
  TempDir dir;
  std::mt19937_64 rng(3);
  WriteFile(dir.path() / "root/a", RandomText(rng, 200000));
  WriteFile(dir.path() / "root/b", RandomBytes(rng, 100000));
  std::string tar = MakeTar(dir.path() / "root", dir.path() / "t.tar");
  std::string blob = Gzip(tar, 150000);
  for (int round = 0; round < 200; ++round) {
    std::string damaged = blob;
    for (int i = 0; i < 1 + round % 3; ++i) {
      damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    if (round % 5 == 0) damaged.resize(rng() % damaged.size());
    StreamIndexOptions options;
    options.span = 32 << 10;
    StreamIndexer indexer(options);
    for (size_t i = 0; i < damaged.size(); i += 4096) {
      ASSERT_TRUE(indexer.Feed(std::string_view(damaged).substr(i, 4096)).ok());
    }
    Result<LayerIndex> index = indexer.Finish();
    EXPECT_EQ(indexer.blob_digest(), Sha256Digest(damaged));
    if (!index.ok()) {
      EXPECT_EQ(index.status().code(), Code::kCorrupt) << index.status().ToString();
    } else {
      // Damage inflate cannot see (stored-block payload, for instance) still gives an index
      // whose units decode.
      for (const Unit& u : index->units) {
        EXPECT_TRUE(DecodeUnit(u, std::string_view(damaged).substr(u.coff, u.clen)).ok());
      }
    }
  }
}

// ---- hostile inflated sizes (docs/architecture.md, "Limits on outside data") ----

// `members` gzip members of `each` zero bytes: a few KiB per 64 MiB, as in a gzip bomb.
std::string ZeroMembers(size_t each, int members) {
  std::string one = Gzip(std::string(each, '\0'), 0, 9);
  std::string out;
  for (int i = 0; i < members; ++i) out += one;
  return out;
}

size_t WindowBytes(const LayerIndex& index) {
  size_t n = 0;
  for (const Unit& u : index.units) n += u.window.size();
  return n;
}

TEST_F(StreamIndexTest, NothingIsIndexedAfterTheTarEnds) {
  std::string plain = Gzip(tar_);
  StreamIndexer reference;
  ASSERT_TRUE(reference.Feed(plain).ok());
  Result<LayerIndex> want = reference.Finish();
  ASSERT_TRUE(want.ok()) << want.status().ToString();

  // The same archive followed by 256 MiB of zeros: the index (its windows above all) must not
  // grow with what follows the archive.
  std::string blob = plain + ZeroMembers(64 << 20, 4);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  std::string padded_tar = tar_ + std::string(size_t{256} << 20, '\0');
  d.diff_id = Sha256Digest(padded_tar);
  padded_tar.clear();
  padded_tar.shrink_to_fit();
  source_.Add(d.digest, blob);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_LE(index->units.size(), want->units.size() + 1);
  EXPECT_LE(WindowBytes(*index), WindowBytes(*want) + 32768);
  ExpectContentMatches(*index, blob, tree_.path(), 50);
}

TEST_F(StreamIndexTest, DiffIdOfTheUncompressedStreamIsChecked) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  d.diff_id = Sha256Digest(tar_ + "x");
  Result<LayerIndex> bad = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_EQ(bad.status().code(), Code::kDigestMismatch) << bad.status().ToString();
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr(d.digest));
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("diff_id"));
  EXPECT_TRUE(cache_->GetLayerIndex(d.digest).status().IsNotFound());
  EXPECT_FALSE(cache_->GetBlobStats(d.digest).complete);

  d.diff_id = Sha256Digest(tar_);
  Result<LayerIndex> good = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(good.ok()) << good.status().ToString();

  // An uncompressed layer's diff_id is its digest.
  LayerDescriptor raw = Describe(tar_, "application/vnd.oci.image.layer.v1.tar");
  raw.diff_id = Sha256Digest("something else");
  source_.Add(raw.digest, tar_);
  EXPECT_EQ(GetOrBuildLayerIndex(raw, cache_.get(), &source_).status().code(),
            Code::kDigestMismatch);
}

// The pass records the diff_id it hashed in the cached index, so a later use of the index
// checks it without the stream, and an index cached without one cannot skip the check.
TEST_F(StreamIndexTest, CachedIndexCarriesTheDiffIdItWasCheckedWith) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  // Indexed with no diff_id to check (as a caller without a config would).
  Result<LayerIndex> built = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  EXPECT_EQ(built->diff_id, Sha256Digest(tar_));
  Result<LayerIndex> stored = LayerIndex::Deserialize(*cache_->GetLayerIndex(d.digest));
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->diff_id, Sha256Digest(tar_));

  // Another image naming the same blob with another diff_id: refused from the cache alone.
  source_.ResetCounts();
  LayerDescriptor lying = d;
  lying.diff_id = Sha256Digest(tar_ + "x");
  Result<LayerIndex> bad = GetOrBuildLayerIndex(lying, cache_.get(), nullptr);
  ASSERT_EQ(bad.status().code(), Code::kDigestMismatch) << bad.status().ToString();
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("layer " + d.digest));
  EXPECT_THAT(bad.status().message(), ::testing::HasSubstr("diff_id for it is " + lying.diff_id));
  LayerDescriptor honest = d;
  honest.diff_id = Sha256Digest(tar_);
  EXPECT_TRUE(GetOrBuildLayerIndex(honest, cache_.get(), nullptr).ok());
  EXPECT_EQ(source_.requests() + source_.read_alls(), 0);

  // An index stored without a diff_id (as before imgfs recorded it) is not trusted for the
  // check: the stream is read again, and checked.
  LayerIndex unchecked = *stored;
  unchecked.diff_id.clear();
  ASSERT_TRUE(cache_->PutLayerIndex(d.digest, unchecked.Serialize()).ok());
  bad = GetOrBuildLayerIndex(lying, cache_.get(), &source_);
  EXPECT_EQ(bad.status().code(), Code::kDigestMismatch) << bad.status().ToString();
  EXPECT_EQ(source_.read_alls(), 1);
  Result<LayerIndex> again = GetOrBuildLayerIndex(honest, cache_.get(), &source_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->diff_id, Sha256Digest(tar_));
  EXPECT_EQ(source_.read_alls(), 2);
}

// An index cached by an earlier imgfs (version 4: its windows inside the one zstd body) is
// used as it is, and stored again in the current version, which keeps the windows apart.
TEST_F(StreamIndexTest, CachedIndexOfAnOlderVersionIsStoredAgain) {
  std::string blob = Gzip(tar_);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  d.diff_id = Sha256Digest(tar_);
  source_.Add(d.digest, blob);
  Result<LayerIndex> built = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_TRUE(built.ok()) << built.status().ToString();
  ASSERT_TRUE(std::any_of(built->units.begin(), built->units.end(),
                          [](const Unit& u) { return !u.window.empty(); }));
  const std::string current = built->Serialize();

  // Version 4: magic, version, body length (LEB128), the body as one zstd frame.
  const std::string body = *SerializeLayerIndexBody(*built);
  std::string v4 = std::string("IMGFSLIX") + '\x04';
  for (uint64_t v = body.size(); v != 0 || v4.size() == 9; v >>= 7) {
    v4 += static_cast<char>((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
  }
  std::string frame(ZSTD_compressBound(body.size()), '\0');
  size_t n = ZSTD_compress(frame.data(), frame.size(), body.data(), body.size(), 3);
  ASSERT_FALSE(ZSTD_isError(n));
  v4 += frame.substr(0, n);
  ASSERT_TRUE(cache_->PutLayerIndex(d.digest, v4).ok());

  source_.ResetCounts();
  Result<LayerIndex> loaded = GetOrBuildLayerIndex(d, cache_.get(), nullptr);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->Serialize(), current);
  Result<std::string> stored = cache_->GetLayerIndex(d.digest);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_FALSE(IsOlderLayerIndexVersion(*stored));
  EXPECT_EQ(*stored, current);
  // Read from the current version, the index keeps its windows as stored frames, and decodes
  // every unit to what the one built from the stream decodes to.
  Result<LayerIndex> again = GetOrBuildLayerIndex(d, cache_.get(), nullptr);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  for (size_t u = 0; u < again->units.size(); ++u) {
    const Unit& unit = again->units[u];
    EXPECT_TRUE(unit.window.empty()) << u;
    EXPECT_EQ(unit.window_frame.empty(), built->units[u].window.empty()) << u;
    std::string_view range = std::string_view(blob).substr(unit.coff, unit.clen);
    Result<std::string> a = DecodeUnit(unit, range);
    Result<std::string> b = DecodeUnit(built->units[u], range);
    ASSERT_TRUE(a.ok() && b.ok()) << u << ": " << a.status().ToString();
    EXPECT_EQ(*a, *b) << u;
  }
  EXPECT_EQ(source_.requests() + source_.read_alls(), 0);
}

TEST_F(StreamIndexTest, GzipBombIsRefusedAtTheInflateLimit) {
  // 1.25 GiB of zeros in about 1.3 MB: over the 1 GiB floor and 100 times the blob.
  std::string blob = ZeroMembers(64 << 20, 20);
  ASSERT_LT(blob.size() * kMaxInflateRatio, kInflateRatioFloor);
  LayerDescriptor d = Describe(blob, "application/vnd.oci.image.layer.v1.tar+gzip");
  source_.Add(d.digest, blob);
  Result<LayerIndex> index = GetOrBuildLayerIndex(d, cache_.get(), &source_);
  ASSERT_EQ(index.status().code(), Code::kCorrupt) << index.status().ToString();
  EXPECT_THAT(index.status().message(), ::testing::HasSubstr("inflates to more than"));
  EXPECT_THAT(index.status().message(), ::testing::HasSubstr(d.digest));
  EXPECT_TRUE(cache_->GetLayerIndex(d.digest).status().IsNotFound());
  EXPECT_FALSE(cache_->GetBlobStats(d.digest).complete);
}

TEST(StreamIndexerTest, InflateLimitStopsTheFeedAtOnce) {
  std::string blob = ZeroMembers(16 << 20, 8);  // 128 MiB inflated
  StreamIndexOptions options;
  options.max_inflated = 32 << 20;
  StreamIndexer indexer(options);
  Status s;
  size_t fed = 0;
  while (s.ok() && fed < blob.size()) {
    s = indexer.Feed(std::string_view(blob).substr(fed, 4096));
    fed += 4096;
  }
  EXPECT_EQ(s.code(), Code::kCorrupt) << s.ToString();
  EXPECT_THAT(s.message(), ::testing::HasSubstr(std::to_string(32 << 20)));
  EXPECT_LT(fed, blob.size() / 2) << "the feed went on after the limit";
}

TEST(StreamIndexerTest, InflateLimitsForBlobSizes) {
  EXPECT_EQ(InflateLimitFor(0), kInflateRatioFloor);
  EXPECT_EQ(InflateLimitFor(1 << 20), kInflateRatioFloor);
  EXPECT_EQ(InflateLimitFor(uint64_t{100} << 20), uint64_t{10000} << 20);
  // A 10 GiB layer compresses to well over 200 MiB; it mounts.
  EXPECT_GE(InflateLimitFor(uint64_t{200} << 20), uint64_t{10} << 30);
  EXPECT_EQ(InflateLimitFor(uint64_t{10} << 30), kMaxInflatedLayerBytes);
  EXPECT_EQ(InflateLimitFor(~uint64_t{0}), kMaxInflatedLayerBytes);
}

TEST(StreamIndexerTest, DiffIdIsTheDigestOfTheUncompressedStream) {
  TempDir dir;
  std::mt19937_64 rng(5);
  WriteFile(dir.path() / "root/a", RandomText(rng, 20000));
  std::string tar = MakeTar(dir.path() / "root", dir.path() / "t.tar");
  StreamIndexer indexer;
  ASSERT_TRUE(indexer.Feed(Gzip(tar, 1000)).ok());
  ASSERT_TRUE(indexer.Finish().ok());
  EXPECT_EQ(indexer.diff_id(), Sha256Digest(tar));
}

}  // namespace
}  // namespace imgfs::fs
