// Lazy pulling measured at the registry. A big image (112 MiB of incompressible files, see
// BuildBigImage) is converted with the real converter (ctr-remote) to eStargz and to
// zstd:chunked and mounted through a counting, bit-flipping HTTP proxy (BlobProxy) in front
// of the test registry, so every byte the registry sends is accounted for, whatever imgfs
// reports about itself:
//   - a cold read of one small file costs no more than what a minimal client needs: each
//     layer's TOC and footer, the file's chunks, and 64 KiB (the design promises "footer +
//     TOC only", so a speculative read of the blob's tail beyond the TOC counts against the
//     slack), and the cache holds no more than that;
//   - a chunk whose bytes are damaged in transit fails the read with EIO, is named in the log
//     and not stored, and the same read succeeds once the registry sends the right bytes;
//   - 16 threads reading random ranges of every file get exactly the reference bytes, the
//     mount equals umoci unpack of the original, and no byte range of a blob is fetched twice
//     (footer and TOC reads aside).
// The image is built and converted once per test binary and per format (a test of one format
// does not pay for the other).
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "base/digest.h"
#include "tests/support/blob_proxy.h"
#include "tests/support/containerd.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

constexpr uint64_t kSlack = 64 << 10;
constexpr uint64_t kMinImageBytes = 100ull << 20;

// One conversion of the big image in the test registry.
struct BigConversion {
  Status status;     // why it is missing
  std::string repo;  // imgfs/big-<kind>, tag latest
  RegistryManifest manifest;
  std::vector<TocLayout> tocs;  // one per manifest layer
};

// The big image, built on first use and shared by every test of the binary.
class BigImage {
 public:
  static BigImage& Get() {
    if (instance_ == nullptr) {
      instance_ = new BigImage;
      TestWorld::Get().AtReset(&BigImage::Reset);
    }
    return *instance_;
  }
  static void Reset() {
    delete instance_;
    instance_ = nullptr;
  }

  Result<const BigConversion*> Conversion(const std::string& kind) {
    if (!base_built_) {
      base_built_ = true;
      base_status_ = BuildBase();
    }
    if (!base_status_.ok()) return base_status_;
    auto it = conversions_.find(kind);
    if (it == conversions_.end()) {
      it = conversions_.emplace(kind, BigConversion{}).first;
      it->second.repo = "imgfs/big-" + kind;
      it->second.status = Convert(kind, &it->second);
    }
    if (!it->second.status.ok()) return it->second.status;
    return &it->second;
  }

  const std::string& reference_root() const { return reference_root_; }
  RegistryServer* registry() const { return registry_; }

 private:
  BigImage() : dir_("big") {}

  Status BuildBase() {
    IMGFS_ASSIGN_OR_RETURN(registry_, TestWorld::Get().Registry());
    IMGFS_ASSIGN_OR_RETURN(OciLayout layout, OciLayout::Init(dir_.Sub("layout")));
    IMGFS_RETURN_IF_ERROR(
        BuildBigImage(layout, "big", dir_.path()).WithContext("building the big image"));
    IMGFS_RETURN_IF_ERROR(layout.Unpack("big", dir_.Sub("reference")));
    reference_root_ = dir_.Sub("reference") + "/rootfs";
    source_ = registry_->host() + "/imgfs/big:oci";
    IMGFS_RETURN_IF_ERROR(PushImage(layout, "big", source_).status());
    // The layout is pushed and unpacked: its 112 MiB are not needed any more.
    RemoveTree(layout.dir());
    return containerd_.Start();
  }

  Status Convert(const std::string& kind, BigConversion* c) {
    IMGFS_RETURN_IF_ERROR(
        containerd_.ConvertAndPush(source_, kind, registry_->host() + "/" + c->repo + ":latest"));
    IMGFS_ASSIGN_OR_RETURN(c->manifest, FetchManifest(registry_->host(), c->repo, "latest"));
    for (const ManifestLayer& layer : c->manifest.layers) {
      IMGFS_ASSIGN_OR_RETURN(
          TocLayout toc, ReadTocLayout(RegistryBlobPath(registry_->storage_dir(), layer.digest)));
      if (toc.blob_size != layer.size) {
        return Status::Corrupt("layer " + layer.digest + " holds " + std::to_string(toc.blob_size) +
                               " bytes, its descriptor says " + std::to_string(layer.size));
      }
      c->tocs.push_back(std::move(toc));
    }
    return Status::Ok();
  }

  static BigImage* instance_;
  TempDir dir_;
  RegistryServer* registry_ = nullptr;
  PrivateContainerd containerd_;
  bool base_built_ = false;
  Status base_status_;
  std::string source_;
  std::string reference_root_;
  std::map<std::string, BigConversion> conversions_;
};
BigImage* BigImage::instance_ = nullptr;

// `imgfs stats MOUNTPOINT --format json`, by layer digest.
Result<std::map<std::string, nlohmann::json>> LayerStats(const ImgfsMount& mount) {
  RunResult r = RunImgfs({"stats", mount.path(), "--format", "json"});
  if (!r.ok()) return Status::Unavailable(r.Describe());
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j["layers"].is_array()) {
    return Status::Corrupt("imgfs stats --format json printed no layers: " + r.out);
  }
  std::map<std::string, nlohmann::json> out;
  for (const auto& l : j["layers"]) {
    if (l.is_object() && l.contains("digest") && l["digest"].is_string()) {
      out[l["digest"].get<std::string>()] = l;
    }
  }
  return out;
}

uint64_t JsonCount(const nlohmann::json& layer, const char* key) {
  auto it = layer.find(key);
  return it != layer.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// Bytes of blob `digest` that the cache at `cache_dir` holds on disk within [begin, end): the
// data extents of its sparse blob file (the design's content store layout), so a unit that was
// stored shows up whatever imgfs stats says. 0 when the cache has no file for the blob.
uint64_t StoredBytesIn(const std::string& cache_dir, const std::string& digest, uint64_t begin,
                       uint64_t end) {
  const std::string hex(DigestHex(digest));
  const std::string path = cache_dir + "/blobs/sha256/" + hex.substr(0, 2) + "/" + hex;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  uint64_t stored = 0;
  off_t pos = static_cast<off_t>(begin);
  while (static_cast<uint64_t>(pos) < end) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) >= end) break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) break;
    stored += std::min<uint64_t>(static_cast<uint64_t>(hole), end) - static_cast<uint64_t>(data);
    pos = hole;
  }
  close(fd);
  return stored;
}

// Reads the whole file; returns 0 or the errno of the first failing call.
int ReadWholeFile(const std::string& path, std::string* out) {
  out->clear();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return err;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return 0;
}

struct RegularFile {
  std::string rel;
  uint64_t size = 0;
};

std::vector<RegularFile> RegularFiles(const std::string& root) {
  std::vector<RegularFile> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (e.is_regular_file() && !e.is_symlink()) {
      files.push_back({std::filesystem::relative(e.path(), root).string(), e.file_size()});
    }
  }
  std::sort(files.begin(), files.end(),
            [](const RegularFile& a, const RegularFile& b) { return a.rel < b.rel; });
  return files;
}

class LazyTransferTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CheckImgfsBinary().ok()) << CheckImgfsBinary().ToString();
    auto conversion = BigImage::Get().Conversion(GetParam());
    ASSERT_TRUE(conversion.ok()) << "preparing the big image as " << GetParam() << ": "
                                 << conversion.status().ToString();
    conversion_ = *conversion;
    auto proxy = BlobProxy::Start(BigImage::Get().registry()->port());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    image_ = proxy_->host() + "/" + conversion_->repo + ":latest";
    log_path_ = log_dir_.Sub("imgfs.log");
  }

  // The uppermost layer holding `rel`, and its chunks there.
  std::pair<size_t, std::vector<TocChunk>> Locate(const std::string& rel) const {
    for (size_t i = conversion_->tocs.size(); i-- > 0;) {
      auto it = conversion_->tocs[i].files.find(rel);
      if (it != conversion_->tocs[i].files.end()) return {i, it->second};
    }
    return {conversion_->tocs.size(), {}};
  }

  std::string Log() const {
    auto log = ReadFile(log_path_);
    return log.ok() ? *log : "(no imgfs log: " + log.status().message() + ")";
  }

  const BigConversion* conversion_ = nullptr;
  std::unique_ptr<BlobProxy> proxy_;
  std::string image_;
  TempDir cache_{"cache"};
  TempDir log_dir_{"log"};
  std::string log_path_;
};

TEST_P(LazyTransferTest, ColdReadOfOneSmallFileFetchesOnlyTocsAndItsChunks) {
  const std::string file = "etc/hello.txt";
  auto [layer_of_file, chunks] = Locate(file);
  ASSERT_LT(layer_of_file, conversion_->tocs.size()) << file << " is in no TOC of the image";
  uint64_t image_bytes = 0;
  for (const ManifestLayer& l : conversion_->manifest.layers) image_bytes += l.size;
  ASSERT_GE(image_bytes, kMinImageBytes) << "the big image is too small to show lazy pulling";
  ASSERT_GE(conversion_->manifest.layers.size(), 2u) << conversion_->manifest.body;

  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(image_, {"--prefetch", "none", "--log", log_path_});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\nimgfs log:\n" << Log();
  auto content = ReadFile(mount.Path(file));
  ASSERT_TRUE(content.ok()) << content.status().ToString() << "\nimgfs log:\n" << Log();
  EXPECT_EQ(*content, BigImageHelloText());
  // Background read-ahead counts as well: wait until it has reached the registry.
  Status idle = mount.WaitReadAheadIdle();
  ASSERT_TRUE(idle.ok()) << idle.ToString() << "\nimgfs log:\n" << Log();

  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  uint64_t fetched = 0;
  uint64_t allowed = kSlack;
  std::ostringstream breakdown;
  for (size_t i = 0; i < conversion_->manifest.layers.size(); ++i) {
    const ManifestLayer& layer = conversion_->manifest.layers[i];
    const TocLayout& toc = conversion_->tocs[i];
    uint64_t layer_fetched = BlobBytes(*requests, layer.digest);
    uint64_t chunk_bytes = 0;
    if (i == layer_of_file) {
      for (const TocChunk& c : chunks) chunk_bytes += c.compressed_size;
    }
    fetched += layer_fetched;
    allowed += toc.TocAndFooterBytes() + chunk_bytes;
    breakdown << "  layer " << i << " " << layer.digest << " (" << layer.size << " bytes): fetched "
              << layer_fetched << ", TOC+footer " << toc.TocAndFooterBytes() << ", chunks of "
              << file << " " << chunk_bytes << "\n";
  }
  EXPECT_LE(fetched, allowed) << "reading " << file << " from a cold " << GetParam()
                              << " mount made the registry send " << fetched
                              << " layer bytes; a minimal client needs at most " << allowed
                              << " (TOCs, footers, the file's chunks, 64 KiB slack):\n"
                              << breakdown.str() << "requests:\n"
                              << proxy_->Describe();

  for (size_t i = 0; i < conversion_->manifest.layers.size(); ++i) {
    const ManifestLayer& layer = conversion_->manifest.layers[i];
    uint64_t chunk_bytes = 0;
    if (i == layer_of_file) {
      for (const TocChunk& c : chunks) chunk_bytes += c.compressed_size;
    }
    const uint64_t stored = StoredBytesIn(cache_.path(), layer.digest, 0, layer.size);
    EXPECT_LE(stored, chunk_bytes + conversion_->tocs[i].TocAndFooterBytes() + kSlack)
        << "after reading only " << file << ", the cache holds " << stored << " bytes of layer "
        << i << " (" << layer.digest << ")";
  }

  auto stats = LayerStats(mount);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  for (size_t i = 0; i < conversion_->manifest.layers.size(); ++i) {
    const std::string& digest = conversion_->manifest.layers[i].digest;
    auto it = stats->find(digest);
    ASSERT_NE(it, stats->end()) << "imgfs stats does not list layer " << digest;
    const uint64_t allowed_units = i == layer_of_file ? chunks.size() : 0;
    EXPECT_LE(JsonCount(it->second, "units_present"), allowed_units)
        << "after reading only " << file << ", layer " << i << " (" << digest
        << ") has more units stored than the file's chunks: " << it->second.dump();
    EXPECT_GT(JsonCount(it->second, "units_total"), allowed_units) << it->second.dump();
    // The index the mount holds for the layer: every entry costs at least its Entry slot.
    const uint64_t entries = JsonCount(it->second, "index_entries");
    EXPECT_GT(entries, 0u) << it->second.dump();
    EXPECT_GE(JsonCount(it->second, "index_bytes"), entries * 100) << it->second.dump();
    if (i == layer_of_file) {
      // Otherwise "nothing else is present" would hold for a stats that never sees a unit.
      EXPECT_GE(JsonCount(it->second, "units_present"), 1u)
          << "imgfs stats shows no unit of " << file << " in layer " << digest
          << " although it was read: " << it->second.dump();
    }
  }
}

TEST_P(LazyTransferTest, DamagedChunkFailsWithEioUntilTheRegistrySendsTheRightBytes) {
  const std::string file = "data/r-0100k.bin";
  auto [layer_index, chunks] = Locate(file);
  ASSERT_LT(layer_index, conversion_->tocs.size()) << file << " is in no TOC of the image";
  ASSERT_FALSE(chunks.empty());
  const std::string& digest = conversion_->manifest.layers[layer_index].digest;
  // The file is random bytes, stored uncompressed inside its gzip member or zstd frame, so a
  // bit in the middle of the chunk is a bit of the file's content.
  const TocChunk& chunk = chunks.front();
  const uint64_t flip_at = chunk.offset + chunk.compressed_size / 2;
  ASSERT_TRUE(proxy_->SetFlip(digest, flip_at).ok());
  auto expected = ReadFile(BigImage::Get().reference_root() + "/" + file);
  ASSERT_TRUE(expected.ok()) << expected.status().ToString();

  ImgfsMount mount(cache_.path());
  RunResult r = mount.Mount(image_, {"--prefetch", "none", "--log", log_path_});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\nimgfs log:\n" << Log();

  std::string content;
  int err = ReadWholeFile(mount.Path(file), &content);
  EXPECT_EQ(err, EIO) << "reading " << file << " whose chunk at blob offset " << chunk.offset
                      << " arrives with a flipped bit gave "
                      << (err == 0 ? "no error" : std::strerror(err))
                      << (err == 0 && content == *expected ? " and the right bytes (?)" : "")
                      << "\nrequests:\n"
                      << proxy_->Describe() << "imgfs log:\n"
                      << Log();
  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  EXPECT_TRUE(std::any_of(requests->begin(), requests->end(),
                          [](const ProxiedRequest& q) { return q.flipped; }))
      << "the proxy never sent the damaged byte, so the test proved nothing:\n"
      << proxy_->Describe();

  // One log line must name both the layer and the damaged unit, so a user can find it.
  const std::string hex12(DigestHex(digest).substr(0, 12));
  const std::string offset_text = std::to_string(chunk.offset);
  std::string log = Log();
  bool named = false;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(hex12) != std::string::npos && line.find(offset_text) != std::string::npos) {
      named = true;
    }
  }
  EXPECT_TRUE(named) << "no line of the imgfs log names layer " << digest << " and unit offset "
                     << offset_text << ":\n"
                     << log;

  auto stats = LayerStats(mount);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_TRUE(stats->count(digest)) << "imgfs stats does not list layer " << digest;
  EXPECT_EQ(JsonCount(stats->at(digest), "units_present"), 0u)
      << "a unit that failed verification was stored: " << stats->at(digest).dump();
  // Whole blocks inside the chunk: a neighbour's unit may share an edge block.
  const uint64_t inner_begin = (chunk.offset + 4095) / 4096 * 4096;
  const uint64_t inner_end = (chunk.offset + chunk.compressed_size) / 4096 * 4096;
  ASSERT_LT(inner_begin, inner_end);
  EXPECT_EQ(StoredBytesIn(cache_.path(), digest, inner_begin, inner_end), 0u)
      << "bytes of the damaged chunk are in the cache's blob file";

  // The registry heals: the same mount must now serve the right bytes.
  ASSERT_TRUE(proxy_->ClearFlips().ok());
  err = ReadWholeFile(mount.Path(file), &content);
  ASSERT_EQ(err, 0) << "after the registry sends the right bytes, reading " << file
                    << " still fails: " << std::strerror(err) << "\nimgfs log:\n"
                    << Log();
  EXPECT_TRUE(content == *expected) << "wrong bytes for " << file << " (" << content.size()
                                    << " bytes, expected " << expected->size() << ")";
  stats = LayerStats(mount);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(StoredBytesIn(cache_.path(), digest, inner_begin, inner_end), inner_end - inner_begin)
      << "the chunk read correctly is not in the cache's blob file";
  EXPECT_GE(JsonCount(stats->at(digest), "units_present"), 1u)
      << "imgfs stats does not count the unit read correctly: " << stats->at(digest).dump()
      << "\nrequests:\n"
      << proxy_->Describe() << "imgfs log:\n"
      << Log();
}

// 16 threads read random ranges of every file of a cold mount made with `mount_args`, through
// a fresh proxy, and compare with the reference; then no blob range may have been fetched
// twice.
void ConcurrentReadsFetchEachRangeOnce(const std::vector<std::string>& mount_args,
                                       const BigConversion& conversion) {
  auto started = BlobProxy::Start(BigImage::Get().registry()->port());
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  BlobProxy& proxy = **started;
  TempDir cache("cache");
  TempDir log_dir("log");
  const std::string log_path = log_dir.Sub("imgfs.log");
  auto Log = [&] {
    auto log = ReadFile(log_path);
    return log.ok() ? *log : "(no imgfs log: " + log.status().message() + ")";
  };
  std::vector<std::string> args = mount_args;
  args.insert(args.end(), {"--log", log_path});
  ImgfsMount mount(cache.path());
  RunResult r = mount.Mount(proxy.host() + "/" + conversion.repo + ":latest", args);
  ASSERT_TRUE(r.ok()) << r.Describe() << "\nimgfs log:\n" << Log();

  const std::string reference = BigImage::Get().reference_root();
  std::vector<RegularFile> files = RegularFiles(reference);
  ASSERT_GE(files.size(), 15u);
  // Every thread walks the files in the same order, so they meet on the same chunks.
  std::shuffle(files.begin(), files.end(), std::mt19937_64(42));

  constexpr int kThreads = 16;
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes{0};
  std::mutex mu;
  std::vector<std::string> failures;
  auto fail = [&](std::string what) {
    std::lock_guard<std::mutex> lock(mu);
    if (failures.size() < 20) failures.push_back(std::move(what));
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(1000 + t);
      std::string want, got;
      for (const RegularFile& f : files) {
        if (f.size == 0) continue;
        int ref_fd = open((reference + "/" + f.rel).c_str(), O_RDONLY | O_CLOEXEC);
        int fd = open(mount.Path(f.rel).c_str(), O_RDONLY | O_CLOEXEC);
        if (ref_fd < 0 || fd < 0) {
          fail(f.rel + ": cannot open: " + std::strerror(errno));
          if (ref_fd >= 0) close(ref_fd);
          if (fd >= 0) close(fd);
          continue;
        }
        const uint64_t n = 2 + std::min<uint64_t>(f.size / (2u << 20), 20);
        for (uint64_t k = 0; k < n; ++k) {
          uint64_t off = random() % f.size;
          uint64_t len = 1 + random() % std::min<uint64_t>(256u << 10, f.size - off);
          want.resize(len);
          got.resize(len);
          ssize_t w = pread(ref_fd, want.data(), len, static_cast<off_t>(off));
          ssize_t g = pread(fd, got.data(), len, static_cast<off_t>(off));
          if (g < 0) {
            fail(f.rel + " [" + std::to_string(off) + ", +" + std::to_string(len) +
                 "): " + std::strerror(errno));
            continue;
          }
          if (g != w || std::memcmp(want.data(), got.data(), static_cast<size_t>(g)) != 0) {
            fail(f.rel + " [" + std::to_string(off) + ", +" + std::to_string(len) +
                 "): wrong bytes (" + std::to_string(g) + " read, " + std::to_string(w) +
                 " expected)");
          }
          ++reads;
          bytes += static_cast<uint64_t>(std::max<ssize_t>(g, 0));
        }
        close(fd);
        close(ref_fd);
      }
    });
  }
  for (auto& t : threads) t.join();
  auto after_reads = proxy.Requests();
  const uint64_t fetched_by_reads = after_reads.ok()
                                        ? BlobBytes(*after_reads,
                                                    conversion.manifest.layers.back().digest)
                                        : 0;
  std::string failure_text;
  for (const auto& f : failures) failure_text += "  " + f + "\n";
  EXPECT_TRUE(failures.empty()) << failures.size() << "+ failed reads out of " << reads.load()
                                << ":\n"
                                << failure_text << "imgfs log:\n"
                                << Log();
  EXPECT_GT(reads.load(), 16u * 30);
  TreeDiff diff = CompareTrees(reference, mount.path());
  EXPECT_TRUE(diff.empty()) << diff.total << " differences between umoci unpack of the big "
                            << "image and its mount:\n"
                            << diff.ToString();

  // Every request is logged when it ends: unmount first, so background fetches are over.
  mount.Unmount();
  auto requests = proxy.Requests();
  ASSERT_TRUE(requests.ok()) << requests.status().ToString();
  std::ostringstream twice;
  int twice_count = 0;
  uint64_t chunk_bytes = 0;
  for (size_t i = 0; i < conversion.manifest.layers.size(); ++i) {
    const ManifestLayer& layer = conversion.manifest.layers[i];
    const TocLayout& toc = conversion.tocs[i];
    std::vector<const ProxiedRequest*> body;
    for (const ProxiedRequest& q : *requests) {
      if (q.digest != layer.digest || !q.IsBlobBody() || q.bytes == 0) continue;
      const uint64_t start = static_cast<uint64_t>(q.start);
      // Footer and TOC reads may overlap each other and the last chunks.
      if (start >= toc.toc_offset || start + q.bytes == toc.blob_size) continue;
      body.push_back(&q);
      chunk_bytes += q.bytes;
    }
    std::sort(body.begin(), body.end(),
              [](const ProxiedRequest* a, const ProxiedRequest* b) { return a->start < b->start; });
    const ProxiedRequest* reach = nullptr;  // the request that fetched furthest so far
    for (const ProxiedRequest* q : body) {
      if (reach != nullptr &&
          static_cast<uint64_t>(q->start) < static_cast<uint64_t>(reach->start) + reach->bytes) {
        if (++twice_count <= 20) {
          twice << "  " << q->ToString() << "\n    overlaps " << reach->ToString() << "\n";
        }
      }
      if (reach == nullptr || q->start + static_cast<int64_t>(q->bytes) >
                                  reach->start + static_cast<int64_t>(reach->bytes)) {
        reach = q;
      }
    }
  }
  EXPECT_EQ(twice_count, 0) << twice_count << " blob ranges were fetched more than once:\n"
                            << twice.str();
  EXPECT_GT(chunk_bytes, 0u) << "no chunk was fetched through the proxy:\n" << proxy.Describe();
  std::cout << "[   INFO   ] " << JoinArgs(mount_args) << ": " << reads.load() << " reads of "
            << bytes.load() << " bytes by " << kThreads << " threads made the registry send "
            << fetched_by_reads << " bytes of the big layer; with a full tree compare "
            << chunk_bytes << " chunk bytes in " << requests->size() << " requests\n";
}

TEST_P(LazyTransferTest, SixteenThreadsGetTheReferenceBytesAndEachRangeIsFetchedOnce) {
  // Alone, the readers race each other for the same chunks; with the default prefetch they
  // also race the background fetcher.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--prefetch", "none"}, std::vector<std::string>{}}) {
    SCOPED_TRACE("imgfs mount " + JoinArgs(args));
    ConcurrentReadsFetchEachRangeOnce(args, *conversion_);
    if (HasFatalFailure()) return;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, LazyTransferTest, ::testing::Values("estargz", "zstdchunked"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace imgfs::test
