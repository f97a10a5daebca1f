// Shared layer indexes end to end (docs/index-format.md): one host mounts the 3-layer gzip
// image and pushes its indexes into the real registry; another host with an empty cache mounts
// the same image through the counting proxy and reads one small file lazily, found through
// referrers (the tag schema: docker-registry 2.8 has no referrers API) with trust configured,
// or through `index convert`'s image index with none. A tampered index found through referrers
// gives EIO and a log line, never bytes that are not the file's; an image without an index
// mounts as before.
#include <gtest/gtest.h>

#include <cctype>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "fs/layer/shared_index.h"
#include "registry/client.h"
#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using nlohmann::json;

constexpr uint64_t kPerLayerSlack = 64 << 10;
constexpr const char* kSmallFile = "etc/owned";  // layer 2, after its 17 MiB file

class SharedIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CheckImgfsBinary().ok()) << CheckImgfsBinary().ToString();
    auto registry = TestWorld::Get().Registry();
    ASSERT_TRUE(registry.ok()) << registry.status().ToString();
    registry_ = *registry;
    auto images = TestWorld::Get().Images("layered");
    ASSERT_TRUE(images.ok()) << images.status().ToString();
    // A repository of its own: the referrers of one test are not another's.
    repo_ = "shared/" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name());
    for (char& c : repo_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto pushed = (*images)->Push("layered", registry_->host(), repo_, "t");
    ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
    image_ = *pushed;
    auto manifest = FetchManifest(image_.host, repo_, "t");
    ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
    manifest_ = *manifest;
    ASSERT_EQ(manifest_.layers.size(), 3u);
    auto proxy = BlobProxy::Start(registry_->port());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
  }

  std::string Proxied(const std::string& tag_or_digest) const {
    const char sep = tag_or_digest.rfind("sha256:", 0) == 0 ? '@' : ':';
    return proxy_->host() + "/" + repo_ + sep + tag_or_digest;
  }

  // Host A: mounts the image straight from the registry with --push-index.
  void HostAPushesIndexes() {
    ImgfsMount a(cache_a_.path());
    a.set_env({{"IMGFS_LOG", "info"}});
    RunResult r = a.Mount(image_.ByTag(), {"--push-index"});
    ASSERT_TRUE(r.ok()) << r.Describe() << "\n" << a.LogTail();
    // Logged before the mount is ready: on the command's stderr.
    EXPECT_NE(r.err.find("pushed the indexes of 3 layer(s)"), std::string::npos) << r.err;
  }

  // The referrers tag schema's index of the image manifest.
  Result<json> ReferrersIndex() const {
    std::string hex = image_.digest.substr(7);
    IMGFS_ASSIGN_OR_RETURN(std::string body,
                           HttpGet(registry_->url() + "/v2/" + repo_ + "/manifests/sha256-" + hex,
                                   {"Accept: application/vnd.oci.image.index.v1+json"}));
    return json::parse(body);
  }

  Result<json> Manifest(const std::string& digest) const {
    IMGFS_ASSIGN_OR_RETURN(std::string body,
                           HttpGet(registry_->url() + "/v2/" + repo_ + "/manifests/" + digest,
                                   {"Accept: application/vnd.oci.image.manifest.v1+json"}));
    return json::parse(body);
  }

  // The shared index of layer `layer` in artifact manifest `artifact`, decoded.
  Result<fs::LayerIndex> SharedIndexOf(const json& artifact, size_t layer,
                                       std::string* blob_digest = nullptr) const {
    const ManifestLayer& l = manifest_.layers[layer];
    for (const json& d : artifact["layers"]) {
      if (d["annotations"]["io.imgfs.layer.digest"] != l.digest) continue;
      const std::string digest = d["digest"];
      if (blob_digest != nullptr) *blob_digest = digest;
      IMGFS_ASSIGN_OR_RETURN(std::string bytes,
                             HttpGet(registry_->url() + "/v2/" + repo_ + "/blobs/" + digest));
      fs::LayerDescriptor desc;
      desc.digest = l.digest;
      desc.size = l.size;
      return fs::DecodeSharedIndex(bytes, desc);
    }
    return Status::NotFound("no shared index of layer " + l.digest);
  }

  // Compressed bytes of the spans holding `path` in `index`, with the one in front of the
  // data when the tar header lies there.
  static uint64_t SpanBytes(const fs::LayerIndex& index, const std::string& path) {
    for (const fs::Entry& e : index.entries) {
      if (e.path != path || e.chunks.empty()) continue;
      std::vector<bool> used(index.units.size());
      for (const fs::Chunk& c : e.chunks) used[c.unit] = true;
      if (e.chunks[0].unit_offset < 512 && e.chunks[0].unit > 0) used[e.chunks[0].unit - 1] = true;
      uint64_t total = 0;
      for (size_t u = 0; u < used.size(); ++u) total += used[u] ? index.units[u].clen : 0;
      return total;
    }
    return 0;
  }

  // Host B's cold mount and one `cat` through the proxy: checks what crossed the registry
  // against the budget and that the whole tree equals umoci's unpack.
  void ExpectLazyMountWithinBudget(const std::string& ref, const std::vector<std::string>& args,
                                   const json& artifact, const std::string& artifact_digest) {
    ImgfsMount b(cache_b_.path());
    b.set_env({{"IMGFS_LOG", "info"}});
    RunResult r = b.Mount(ref, args);
    ASSERT_TRUE(r.ok()) << r.Describe() << "\n" << b.LogTail();
    auto content = ReadFile(b.Path(kSmallFile));
    ASSERT_TRUE(content.ok()) << content.status().ToString() << "\n" << b.LogTail();
    EXPECT_EQ(*content, "owned by 1234:5678\n");

    auto requests = proxy_->Requests();
    ASSERT_TRUE(requests.ok()) << requests.status().ToString();
    uint64_t index_bytes = 0;
    std::vector<std::string> index_digests = {artifact_digest};
    for (const json& d : artifact["layers"]) index_digests.push_back(d["digest"]);
    for (const ProxiedRequest& q : *requests) {
      for (const std::string& d : index_digests) {
        if (q.path.find(d) != std::string::npos) index_bytes += q.bytes;
      }
    }
    uint64_t budget_total = index_bytes;
    uint64_t layer_total = 0;
    for (size_t i = 0; i < manifest_.layers.size(); ++i) {
      auto index = SharedIndexOf(artifact, i);
      ASSERT_TRUE(index.ok()) << index.status().ToString();
      const uint64_t spans = SpanBytes(*index, kSmallFile);
      const uint64_t got = BlobBytes(*requests, manifest_.layers[i].digest);
      EXPECT_LE(got, spans + kPerLayerSlack)
          << "layer " << i << " (" << manifest_.layers[i].size << " bytes)\n"
          << proxy_->Describe();
      std::cout << "layer " << i << ": " << got << " of " << manifest_.layers[i].size
                << " bytes transferred (the file's spans: " << spans << ")\n";
      budget_total += spans + kPerLayerSlack;
      layer_total += got;
    }
    std::cout << "index artifact: " << index_bytes << " bytes; layers: " << layer_total
              << " bytes\n";
    EXPECT_LE(index_bytes + layer_total, budget_total);
    EXPECT_NE(r.err.find("mounted lazily with the shared index in " + artifact_digest),
              std::string::npos)
        << r.err;

    TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), b.path());
    EXPECT_TRUE(diff.empty()) << diff.ToString() << "\n" << b.LogTail();
    EXPECT_GT(diff.entries_compared, 20u);
  }

  RegistryServer* registry_ = nullptr;
  std::string repo_;
  PushedImage image_;
  RegistryManifest manifest_;
  std::unique_ptr<BlobProxy> proxy_;
  TempDir cache_a_{"cache-a"};
  TempDir cache_b_{"cache-b"};
};

TEST_F(SharedIndexTest, AnIndexPushedByOneHostMountsLazilyOnAnotherThroughReferrers) {
  HostAPushesIndexes();
  auto referrers = ReferrersIndex();
  ASSERT_TRUE(referrers.ok()) << referrers.status().ToString();
  ASSERT_EQ((*referrers)["manifests"].size(), 1u) << referrers->dump();
  const json& entry = (*referrers)["manifests"][0];
  EXPECT_EQ(entry["artifactType"], fs::kSharedIndexArtifactType);
  const std::string artifact_digest = entry["digest"];
  auto artifact = Manifest(artifact_digest);
  ASSERT_TRUE(artifact.ok()) << artifact.status().ToString();
  EXPECT_EQ((*artifact)["subject"]["digest"], image_.digest);
  EXPECT_EQ((*artifact)["config"]["mediaType"], "application/vnd.oci.empty.v1+json");
  ASSERT_EQ((*artifact)["layers"].size(), 3u);

  ExpectLazyMountWithinBudget(Proxied("t"), {"--trust-index-from", proxy_->host() + "/" + repo_},
                              *artifact, artifact_digest);
}

TEST_F(SharedIndexTest, AConvertedImageBindsItsIndexWithoutTrustConfiguration) {
  HostAPushesIndexes();
  RunResult conv = RunImgfs(
      {"index", "convert", "--cache", cache_a_.path(), image_.ByTag(), "converted"});
  ASSERT_TRUE(conv.ok()) << conv.Describe();
  const size_t at = conv.out.find('@');
  ASSERT_NE(at, std::string::npos) << conv.out;
  const std::string index_digest = conv.out.substr(at + 1, 71);
  auto index = HttpGet(registry_->url() + "/v2/" + repo_ + "/manifests/" + index_digest,
                       {"Accept: application/vnd.oci.image.index.v1+json"});
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  json doc = json::parse(*index);
  ASSERT_EQ(doc["manifests"].size(), 2u) << doc.dump();
  EXPECT_EQ(doc["manifests"][0]["digest"], image_.digest);
  const std::string artifact_digest = doc["manifests"][1]["digest"];
  EXPECT_EQ(doc["manifests"][1]["artifactType"], fs::kSharedIndexArtifactType);
  auto artifact = Manifest(artifact_digest);
  ASSERT_TRUE(artifact.ok()) << artifact.status().ToString();

  ExpectLazyMountWithinBudget(Proxied(index_digest), {}, *artifact, artifact_digest);
}

TEST_F(SharedIndexTest, ATamperedIndexFoundThroughReferrersGivesEioNeverWrongBytes) {
  HostAPushesIndexes();
  auto referrers = ReferrersIndex();
  ASSERT_TRUE(referrers.ok()) << referrers.status().ToString();
  auto artifact = Manifest((*referrers)["manifests"][0]["digest"]);
  ASSERT_TRUE(artifact.ok()) << artifact.status().ToString();
  std::string old_blob;
  auto index = SharedIndexOf(*artifact, 1, &old_blob);
  ASSERT_TRUE(index.ok()) << index.status().ToString();

  // etc/owned mapped onto the data of etc/nsec-file: same units, a wrong offset.
  fs::Entry* owned = nullptr;
  const fs::Entry* nsec = nullptr;
  for (fs::Entry& e : index->entries) {
    if (e.path == "etc/owned") owned = &e;
    if (e.path == "etc/nsec-file") nsec = &e;
  }
  ASSERT_TRUE(owned != nullptr && nsec != nullptr);
  ASSERT_EQ(owned->chunks.size(), 1u);
  owned->chunks[0].unit = nsec->chunks[0].unit;
  owned->chunks[0].unit_offset = nsec->chunks[0].unit_offset;
  owned->size = owned->chunks[0].length = std::min(owned->size, nsec->size);
  auto tampered = fs::EncodeSharedIndex(*index);
  ASSERT_TRUE(tampered.ok()) << tampered.status().ToString();

  registry::Client client;
  auto ref = registry::Reference::Parse(image_.ByTag());
  ASSERT_TRUE(ref.ok());
  auto blob = client.PushBlob(*ref, *tampered);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  json bad = *artifact;
  for (json& d : bad["layers"]) {
    if (d["digest"] == old_blob) {
      d["digest"] = *blob;
      d["size"] = tampered->size();
    }
  }
  auto bad_digest = client.PutManifest(*ref, Sha256Digest(bad.dump()),
                                       "application/vnd.oci.image.manifest.v1+json", bad.dump());
  ASSERT_TRUE(bad_digest.ok()) << bad_digest.status().ToString();
  json only_bad = *referrers;
  only_bad["manifests"][0]["digest"] = *bad_digest;
  only_bad["manifests"][0]["size"] = bad.dump().size();
  auto put = PutManifest(image_.host, repo_, "sha256-" + image_.digest.substr(7), only_bad.dump(),
                         "application/vnd.oci.image.index.v1+json");
  ASSERT_TRUE(put.ok()) << put.status().ToString();

  ImgfsMount b(cache_b_.path());
  RunResult r = b.Mount(Proxied("t"), {"--trust-index-from", proxy_->host()});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\n" << b.LogTail();
  auto content = ReadFile(b.Path(kSmallFile));
  ASSERT_FALSE(content.ok()) << "read returned \"" << *content << "\"";
  EXPECT_NE(content.status().message().find("Input/output error"), std::string::npos)
      << content.status().ToString();
  EXPECT_NE(b.LogTail().find("its shared index does not match the layer"), std::string::npos)
      << b.LogTail();
  // The lower and upper layers' indexes are right and still serve.
  auto hostname = ReadFile(b.Path("etc/hostname"));
  ASSERT_TRUE(hostname.ok()) << hostname.status().ToString();
  EXPECT_EQ(*hostname, "layered-image, layer 3\n");
}

TEST_F(SharedIndexTest, PrefetchAllOfABorrowedIndexChecksEveryLayerWhole) {
  HostAPushesIndexes();
  ImgfsMount b(cache_b_.path());
  b.set_env({{"IMGFS_LOG", "info"}});
  RunResult r = b.Mount(Proxied("t"), {"--trust-index-from", proxy_->host(), "--prefetch", "all"});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\n" << b.LogTail();
  // Each layer, once all its spans are in, is put together, hashed and decoded.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t checked = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string log = b.LogTail();
    checked = 0;
    for (size_t pos = 0; (pos = log.find("matches its diff_id", pos)) != std::string::npos; ++pos) {
      ++checked;
    }
    if (checked >= 3 || log.find("prefetch finished") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(checked, 3u) << b.LogTail();
  auto content = ReadFile(b.Path(kSmallFile));
  ASSERT_TRUE(content.ok()) << content.status().ToString();
  EXPECT_EQ(*content, "owned by 1234:5678\n");
}

TEST_F(SharedIndexTest, AnImageWithoutAnIndexMountsAsBefore) {
  ImgfsMount b(cache_b_.path());
  RunResult r = b.Mount(Proxied("t"), {"--trust-index-from", proxy_->host()});
  ASSERT_TRUE(r.ok()) << r.Describe() << "\n" << b.LogTail();
  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok());
  for (const ManifestLayer& l : manifest_.layers) {
    EXPECT_EQ(BlobBytes(*requests, l.digest), l.size) << "streamed whole, once";
  }
  TreeDiff diff = CompareTrees(TestWorld::Get().ReferenceRoot("layered"), b.path());
  EXPECT_TRUE(diff.empty()) << diff.ToString();
}

}  // namespace
}  // namespace imgfs::test
