// `imgfs store` as podman's additional layer store: Debian's podman 4.3 and runc run
// containers whose layers the store serves, with podman configured entirely under a temp dir
// (tests/support/podman.h) and every registry request counted at a proxy
// (tests/support/blob_proxy.h).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "tests/support/blob_proxy.h"
#include "tests/support/containerd.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/podman.h"
#include "tests/support/process.h"
#include "tests/support/registry_server.h"
#include "tests/support/sanitizer.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

// A store served by the built imgfs (`imgfs store --cache CACHE MOUNTPOINT`), always taken down.
class StoreProcess {
 public:
  explicit StoreProcess(std::string cache) : dir_("store"), cache_(std::move(cache)) {
    mount_point_ = dir_.MakeDir("mnt");
  }
  ~StoreProcess() { Stop(); }

  RunResult Start(const std::vector<std::string>& args = {}) {
    std::vector<std::string> argv = {"store", "--cache", cache_, "--log", dir_.Sub("store.log")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(mount_point_);
    return RunImgfs(argv);
  }
  void Stop() {
    if (IsMountPoint(mount_point_)) RunImgfs({"umount", mount_point_});
    if (IsMountPoint(mount_point_)) RunCommand({"fusermount3", "-u", "-z", mount_point_});
    WaitUntil([&] { return ImgfsProcessesFor(mount_point_).empty(); }, 10);
    KillImgfsProcessesFor(mount_point_);
  }

  const std::string& path() const { return mount_point_; }
  std::string Log() const {
    auto log = ReadFile(dir_.Sub("store.log"));
    return log.ok() ? *log : "(no log)";
  }
  // The store's stats (fs/fuse/store_fs.h): {"layers": [{"ref", "digest", "uses", "pinned"}]}.
  nlohmann::json Stats() const {
    std::string value(1 << 20, '\0');
    ssize_t n = ::getxattr(mount_point_.c_str(), "user.imgfs.stats", value.data(), value.size());
    if (n < 0) return nlohmann::json();
    value.resize(static_cast<size_t>(n));
    return nlohmann::json::parse(value, nullptr, false);
  }
  // Stats()["layers"] as a value of its own: a range-for over Stats()["layers"] iterates a
  // member of a temporary that is already destroyed (ASan: heap-use-after-free).
  nlohmann::json Layers() const { return Stats()["layers"]; }
  int Uses() const {
    int total = 0;
    nlohmann::json stats = Stats();
    if (stats.is_object()) {
      for (const auto& l : stats["layers"]) total += l.value("uses", 0);
    }
    return total;
  }

 private:
  TempDir dir_;
  std::string cache_;
  std::string mount_point_;
};

// The command the tests run inside containers: the images have no shell of their own, so the
// host's static busybox is bound in read-only (the same in every container compared).
std::vector<std::string> Busybox(const std::string& image, const std::vector<std::string>& cmd) {
  std::vector<std::string> args = {"-v", "/bin/busybox:/bb/busybox:ro", "--entrypoint",
                                   "/bb/busybox", image};
  args.insert(args.end(), cmd.begin(), cmd.end());
  return args;
}

// Every file of the container's root: type, mode, owner and sha256 of regular files; not
// the files podman binds in for each container (hostname, hosts, resolv.conf).
const std::vector<std::string> kListing = {
    "sh", "-c",
    "cd / && /bb/busybox find . -xdev ! -path './bb*' ! -path ./etc/hostname ! -path ./etc/hosts "
    "! -path ./etc/resolv.conf | /bb/busybox sort | while read -r f; do "
    "s=$(/bb/busybox stat -c '%F %a %u:%g' \"$f\"); "
    "if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then "
    "s=\"$s $(/bb/busybox sha256sum < \"$f\" | /bb/busybox cut -c1-64)\"; fi; "
    "echo \"$f $s\"; done"};

class PodmanStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CheckImgfsBinary().ok()) << CheckImgfsBinary().ToString();
    auto registry = TestWorld::Get().Registry();
    ASSERT_TRUE(registry.ok()) << registry.status().ToString();
    auto proxy = BlobProxy::Start((*registry)->port());
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
  }

  std::vector<ProxiedRequest> RequestsSince(size_t n) {
    auto all = proxy_->Requests();
    if (!all.ok() || all->size() < n) return {};
    return std::vector<ProxiedRequest>(all->begin() + static_cast<long>(n), all->end());
  }
  size_t RequestCount() {
    auto all = proxy_->Requests();
    return all.ok() ? all->size() : 0;
  }
  // Disk bytes of the cache's blob files, as `imgfs cache df` reports them.
  uint64_t CachedBlobBytes() {
    RunResult df = RunImgfs({"cache", "df", "--cache", cache_.path(), "--format", "json"});
    EXPECT_TRUE(df.ok()) << df.Describe();
    nlohmann::json j = nlohmann::json::parse(df.out, nullptr, false);
    EXPECT_TRUE(j.is_object() && j["blobs"]["size"].is_number()) << df.out;
    return j.is_object() && j["blobs"]["size"].is_number() ? j["blobs"]["size"].get<uint64_t>() : 0;
  }
  RunResult CacheGc() {
    return RunImgfs({"cache", "gc", "--cache", cache_.path(), "--max-size", "0"});
  }

  TempDir cache_{"cache"};
  std::unique_ptr<BlobProxy> proxy_;
};

// The layered image pushed for podman (see test_images.h), through the proxy, and its layers.
struct ProxiedImage {
  std::string image;  // proxy host/repo:tag
  std::vector<std::string> layers;
};

TEST_F(PodmanStoreTest, RunsTheLayeredImageFromTheStoreAsAPulledOne) {
  auto pushed = TestWorld::Get().Pushed("layered-podman", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string image = proxy_->host() + "/" + pushed->repo + ":" + pushed->tag;
  auto manifest = FetchManifest(pushed->host, pushed->repo, pushed->tag);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  ASSERT_EQ(manifest->layers.size(), 3u);
  // The store's cache holds the layers already: whatever reaches the registry during the
  // run below is podman's own doing.
  RunResult pull = RunImgfs({"pull", "--cache", cache_.path(), image});
  ASSERT_TRUE(pull.ok()) << pull.Describe();

  StoreProcess store(cache_.path());
  RunResult started = store.Start();
  ASSERT_TRUE(started.ok()) << started.Describe();
  auto podman = PrivatePodman::Create(proxy_->host(), store.path());
  ASSERT_TRUE(podman.ok()) << podman.status().ToString();

  const size_t before = RequestCount();
  RunResult run = (*podman)->Run(
      Busybox(image, {"cat", "/data/keep", "/etc/replaced/only-in-layer2"}));
  ASSERT_TRUE(run.ok()) << run.Describe() << "\nstore log:\n" << store.Log();
  EXPECT_EQ(run.out, "kept from layer 1\nlayer 2 owns this directory now\n");
  for (const ManifestLayer& layer : manifest->layers) {
    EXPECT_THAT(run.err, HasSubstr("Skipping blob " + layer.digest + " (already present)"));
  }
  for (const ProxiedRequest& r : RequestsSince(before)) {
    for (const ManifestLayer& layer : manifest->layers) {
      EXPECT_THAT(r.path, ::testing::Not(HasSubstr(layer.digest))) << r.ToString();
    }
  }

  // Every file as the container sees it equals a container of the same image pulled by podman
  // itself, without the store.
  RunResult listed = (*podman)->Run(Busybox(image, kListing));
  ASSERT_TRUE(listed.ok()) << listed.Describe();
  auto plain = PrivatePodman::Create(proxy_->host(), "");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  RunResult expected = (*plain)->Run(Busybox(image, kListing));
  ASSERT_TRUE(expected.ok()) << expected.Describe();
  EXPECT_EQ(listed.out, expected.out);
  // What the comparison must have covered: the layers' corner cases as podman shows them.
  EXPECT_THAT(expected.out, HasSubstr("./bin/setuid-tool regular file 4755 0:0 "));
  EXPECT_THAT(expected.out, HasSubstr("./etc/owned regular file 600 1234:5678 "));
  // The link's header mode (0644) is applied to the shared inode, the target said 0640.
  EXPECT_THAT(expected.out, HasSubstr("./data/hardlink-b regular file 644 0:0 "));
  EXPECT_THAT(expected.out, HasSubstr("./run/fifo fifo 644 0:0"));
  EXPECT_THAT(expected.out, ::testing::Not(HasSubstr("./data/remove-me ")));
  EXPECT_THAT(expected.out, ::testing::Not(HasSubstr("./etc/replaced/a ")));
  EXPECT_THAT(expected.out, HasSubstr("./big/blob.bin regular file"));

  // `podman save` takes the store's layers from their `blob` files (a `blob` answering EIO
  // fails it), decompresses and compresses them afresh: each saved layer must decompress to
  // the very layer the image config names (its diff_id).
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  auto config = ReadFile(RegistryBlobPath((*registry)->storage_dir(),
                                          manifest->json["config"]["digest"].get<std::string>()));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  nlohmann::json diff_ids = nlohmann::json::parse(*config, nullptr, false)["rootfs"]["diff_ids"];
  ASSERT_EQ(diff_ids.size(), manifest->layers.size()) << *config;
  TempDir saved("podman-save");
  RunResult save = (*podman)->Podman(
      {"save", "--format", "oci-dir", "-o", saved.Sub("oci"), image});
  ASSERT_TRUE(save.ok()) << save.Describe() << "\nstore log:\n" << store.Log();
  auto blob = [&](const std::string& digest) {
    return saved.Sub("oci/blobs/sha256/" + digest.substr(7));
  };
  auto index = ReadFile(saved.Sub("oci/index.json"));
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  auto saved_manifest = ReadFile(blob(
      nlohmann::json::parse(*index, nullptr, false)["manifests"][0]["digest"].get<std::string>()));
  ASSERT_TRUE(saved_manifest.ok()) << saved_manifest.status().ToString();
  nlohmann::json layers = nlohmann::json::parse(*saved_manifest, nullptr, false)["layers"];
  ASSERT_EQ(layers.size(), diff_ids.size()) << *saved_manifest;
  for (size_t i = 0; i < layers.size(); ++i) {
    RunResult uncompressed = RunCommand(
        {"sh", "-c",
         "gzip -dc < '" + blob(layers[i]["digest"].get<std::string>()) + "' | sha256sum"});
    ASSERT_TRUE(uncompressed.ok()) << uncompressed.Describe();
    EXPECT_EQ("sha256:" + uncompressed.out.substr(0, 64), diff_ids[i].get<std::string>()) << i;
  }
}

// The store's layout read directly, as podman's storage library reads it.
TEST_F(PodmanStoreTest, LayerDirectoriesHoldDiffInfoAndBlobInOverlayFormat) {
  auto pushed = TestWorld::Get().Pushed("layered-podman", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string image = proxy_->host() + "/" + pushed->repo + ":" + pushed->tag;
  auto manifest = FetchManifest(pushed->host, pushed->repo, pushed->tag);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  StoreProcess store(cache_.path());
  RunResult started = store.Start();
  ASSERT_TRUE(started.ok()) << started.Describe();

  const std::string ref_dir = store.path() + "/" + EncodeBase64(image);
  const std::string layer2 = ref_dir + "/" + manifest->layers[1].digest;
  struct stat st;
  ASSERT_EQ(lstat((layer2 + "/diff").c_str(), &st), 0) << store.Log();
  // A whiteout is a 0/0 character device, in stat and in readdir.
  ASSERT_EQ(lstat((layer2 + "/diff/data/remove-me").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, 0u);
  bool whiteout_listed_as_chr = false;
  for (const auto& e : std::filesystem::directory_iterator(layer2 + "/diff/data")) {
    if (e.path().filename() == "remove-me") {
      whiteout_listed_as_chr = e.symlink_status().type() == std::filesystem::file_type::character;
    }
  }
  EXPECT_TRUE(whiteout_listed_as_chr);
  char value[64] = {};
  ssize_t n = lgetxattr((layer2 + "/diff/etc/replaced").c_str(), "trusted.overlay.opaque", value,
                        sizeof(value));
  EXPECT_EQ(std::string(value, n > 0 ? static_cast<size_t>(n) : 0), "y");
  n = lgetxattr((layer2 + "/diff/etc/xattr-file").c_str(), "user.imgfs.test", value, sizeof(value));
  EXPECT_GT(n, 0);
  ASSERT_EQ(lstat((layer2 + "/diff/bin/setuid-tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  ASSERT_EQ(lstat((layer2 + "/diff/etc/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  // Only this layer's own files: layer 1's are not in layer 2's diff.
  EXPECT_NE(lstat((layer2 + "/diff/data/keep").c_str(), &st), 0);

  auto info = ReadFile(layer2 + "/info");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  nlohmann::json j = nlohmann::json::parse(*info, nullptr, false);
  EXPECT_EQ(j.value("compressed-diff-digest", ""), manifest->layers[1].digest);
  EXPECT_EQ(j.value("compressed-size", uint64_t{0}), manifest->layers[1].size);
  EXPECT_EQ(j.value("diff-digest", "").substr(0, 7), "sha256:");
  auto blob = FileSha256(layer2 + "/blob");
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(*blob, manifest->layers[1].digest);

  // use and release: ENOENT both, counted.
  EXPECT_EQ(store.Uses(), 0);
  int fd = open((layer2 + "/use").c_str(), O_CREAT | O_WRONLY, 0644);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(store.Uses(), 1);
  EXPECT_EQ(rmdir(layer2.c_str()), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(store.Uses(), 0);

  // What it cannot serve is ENOENT at once.
  EXPECT_NE(lstat((ref_dir + "/sha256:" + std::string(64, '0')).c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_NE(lstat((store.path() + "/not-base64!").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOENT);
}

// podman's release of layers reaches the store and lets `imgfs cache gc` evict them (a later
// run fetches again); what podman keeps (symlinks to the store's paths, counts of uses) holds
// after the store restarted: the layers in use stay pinned, are served from the cache with the
// registry gone, and a release after the restart unpins them.
TEST_F(PodmanStoreTest, RmiReleasesTheLayersAndARestartedStoreServesOffline) {
  auto pushed = TestWorld::Get().Pushed("layered-podman", ManifestFormat::kOci);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  const std::string image = proxy_->host() + "/" + pushed->repo + ":" + pushed->tag;
  auto manifest = FetchManifest(pushed->host, pushed->repo, pushed->tag);
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  RunResult pull = RunImgfs({"pull", "--cache", cache_.path(), image});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  StoreProcess store(cache_.path());
  RunResult started = store.Start();
  ASSERT_TRUE(started.ok()) << started.Describe();
  auto podman = PrivatePodman::Create(proxy_->host(), store.path());
  ASSERT_TRUE(podman.ok()) << podman.status().ToString();

  RunResult run = (*podman)->Run(Busybox(image, {"cat", "/data/keep"}));
  ASSERT_TRUE(run.ok()) << run.Describe() << "\nstore log:\n" << store.Log();
  EXPECT_EQ(store.Uses(), 3) << store.Stats().dump();
  RunResult rmi = (*podman)->Podman({"rmi", image});
  ASSERT_TRUE(rmi.ok()) << rmi.Describe();
  EXPECT_EQ(store.Uses(), 0) << store.Stats().dump();
  for (const auto& layer : store.Layers()) {
    EXPECT_FALSE(layer.value("pinned", true)) << layer.dump();
  }
  // Released and unpinned, the layers' bytes go at the next gc.
  EXPECT_GT(CachedBlobBytes(), 0u);
  RunResult gc = CacheGc();
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_EQ(CachedBlobBytes(), 0u) << gc.out << gc.err;

  // What a new container reads is fetched again (by a restarted store: the running one's page
  // cache in the kernel still holds what the first container read).
  store.Stop();
  started = store.Start();
  ASSERT_TRUE(started.ok()) << started.Describe();
  size_t before = RequestCount();
  run = (*podman)->Run(Busybox(image, {"cat", "/data/keep", "/etc/replaced/added-in-layer3"}));
  ASSERT_TRUE(run.ok()) << run.Describe() << "\nstore log:\n" << store.Log();
  EXPECT_EQ(run.out, "kept from layer 1\nlayer 3 adds to it\n");
  uint64_t refetched = 0;
  for (const ManifestLayer& layer : manifest->layers) {
    refetched += BlobBytes(RequestsSince(before), layer.digest);
  }
  EXPECT_GT(refetched, 0u);

  // The image is podman's again: its uses outlive a restart of the store, the layers stay
  // pinned through a gc, and the restarted store serves them with the registry gone.
  EXPECT_EQ(store.Uses(), 3) << store.Stats().dump();
  store.Stop();
  started = store.Start();
  ASSERT_TRUE(started.ok()) << started.Describe();
  EXPECT_EQ(store.Uses(), 3) << store.Stats().dump();
  for (const auto& layer : store.Layers()) {
    EXPECT_TRUE(layer.value("pinned", false)) << layer.dump();
  }
  const uint64_t kept = CachedBlobBytes();
  gc = CacheGc();
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_EQ(CachedBlobBytes(), kept) << gc.out << gc.err;
  proxy_.reset();  // the registry's only address is gone
  run = (*podman)->Run(Busybox(image, {"cat", "/data/keep", "/etc/replaced/added-in-layer3"}), 120);
  ASSERT_TRUE(run.ok()) << run.Describe() << "\nstore log:\n" << store.Log();
  EXPECT_EQ(run.out, "kept from layer 1\nlayer 3 adds to it\n");

  // podman's release after the restart finds the counts: nothing stays pinned.
  rmi = (*podman)->Podman({"rmi", image});
  ASSERT_TRUE(rmi.ok()) << rmi.Describe();
  EXPECT_EQ(store.Uses(), 0) << store.Stats().dump();
  for (const auto& layer : store.Layers()) {
    EXPECT_FALSE(layer.value("pinned", true)) << layer.dump();
  }
  gc = CacheGc();
  ASSERT_TRUE(gc.ok()) << gc.Describe();
  EXPECT_EQ(CachedBlobBytes(), 0u) << gc.out << gc.err;
}

// The big image of lazy_images.h converted by the real converter, as the registry holds it.
struct ConvertedImage {
  std::string repo;  // imgfs/big-podman-<kind>
  RegistryManifest manifest;
  std::vector<TocLayout> tocs;  // per layer
  size_t big_layer = 0;         // the layer of data/r-*.bin
};

Result<ConvertedImage> Convert(PrivateContainerd& containerd, RegistryServer& registry,
                               const std::string& source, const std::string& kind) {
  ConvertedImage out;
  out.repo = "imgfs/big-podman-" + kind;
  IMGFS_RETURN_IF_ERROR(
      containerd.ConvertAndPush(source, kind, registry.host() + "/" + out.repo + ":latest"));
  IMGFS_ASSIGN_OR_RETURN(out.manifest, FetchManifest(registry.host(), out.repo, "latest"));
  for (size_t i = 0; i < out.manifest.layers.size(); ++i) {
    IMGFS_ASSIGN_OR_RETURN(
        TocLayout toc,
        ReadTocLayout(RegistryBlobPath(registry.storage_dir(), out.manifest.layers[i].digest)));
    if (toc.files.count("data/r-0003m.bin")) out.big_layer = i;
    out.tocs.push_back(std::move(toc));
  }
  return out;
}

// What a container that read only etc/hello.txt may have made the registry send (`requests`):
// the TOCs and footers, that file's chunks, a little slack per layer.
void ExpectOnlyTocsAndHelloFetched(const ConvertedImage& c,
                                   const std::vector<ProxiedRequest>& requests) {
  uint64_t fetched = 0, allowed = 0, image_bytes = 0;
  for (size_t i = 0; i < c.tocs.size(); ++i) {
    fetched += BlobBytes(requests, c.manifest.layers[i].digest);
    image_bytes += c.manifest.layers[i].size;
    allowed += c.tocs[i].TocAndFooterBytes() + (64 << 10);  // the 16 KiB first tail read, slack
    auto it = c.tocs[i].files.find("etc/hello.txt");
    if (it != c.tocs[i].files.end()) {
      for (const TocChunk& chunk : it->second) allowed += chunk.compressed_size;
    }
  }
  EXPECT_LE(fetched, allowed) << c.repo << ": of " << image_bytes << " bytes of layers";
  EXPECT_GE(image_bytes, uint64_t{100} << 20) << c.repo;
}

// The 112 MiB image of lazy_images.h converted to eStargz and to zstd:chunked by the real
// converter: a container that reads one small file makes the registry send only the TOCs and
// that file's chunks (the store runs with --prefetch none, so the landmark prefetch adds
// nothing); `blob` serves no byte a registry changed; a registry that stalls on a layer gives the
// reader EIO within the configured time while other layers still serve.
TEST_F(PodmanStoreTest, TocContainersFetchOnlyWhatTheyReadAndAStallIsEio) {
  auto registry = TestWorld::Get().Registry();
  ASSERT_TRUE(registry.ok()) << registry.status().ToString();
  TempDir work("big");
  auto layout = OciLayout::Init(work.Sub("layout"));
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  Status built = BuildBigImage(*layout, "big", work.path());
  ASSERT_TRUE(built.ok()) << built.ToString();
  const std::string source = (*registry)->host() + "/imgfs/big-podman:oci";
  ASSERT_TRUE(PushImage(*layout, "big", source).ok());
  RemoveTree(layout->dir());
  PrivateContainerd containerd;
  Status s = containerd.Start();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto estargz = Convert(containerd, **registry, source, "estargz");
  ASSERT_TRUE(estargz.ok()) << estargz.status().ToString();
  auto zstd = Convert(containerd, **registry, source, "zstdchunked");
  ASSERT_TRUE(zstd.ok()) << zstd.status().ToString();
  const RegistryManifest* manifest = &estargz->manifest;
  const size_t big_layer = estargz->big_layer;
  const std::string image = proxy_->host() + "/" + estargz->repo + ":latest";

  StoreProcess store(cache_.path());
  RunResult started = store.Start({"--prefetch", "none", "--stall-timeout", "1"});
  ASSERT_TRUE(started.ok()) << started.Describe();
  auto podman = PrivatePodman::Create(proxy_->host(), store.path());
  ASSERT_TRUE(podman.ok()) << podman.status().ToString();

  for (const ConvertedImage* c : {&*estargz, &*zstd}) {
    const size_t before = RequestCount();
    RunResult run = (*podman)->Run(
        Busybox(proxy_->host() + "/" + c->repo + ":latest", {"cat", "/etc/hello.txt"}));
    ASSERT_TRUE(run.ok()) << run.Describe() << "\nstore log:\n" << store.Log();
    EXPECT_EQ(run.out, BigImageHelloText());
    for (const ManifestLayer& layer : c->manifest.layers) {
      EXPECT_THAT(run.err, HasSubstr("Skipping blob " + layer.digest + " (already present)"));
    }
    ExpectOnlyTocsAndHelloFetched(*c, RequestsSince(before));
  }
  // podman 5.1 and later name such a layer by its TOC digest: the same layer answers there.
  const std::string toc_digest = manifest->layers[0].annotations.at(kEstargzTocDigestAnnotation);
  auto info = ReadFile(store.path() + "/" + EncodeBase64(image) + "/" + toc_digest + "/info");
  ASSERT_TRUE(info.ok()) << info.status().ToString() << "\nstore log:\n" << store.Log();
  nlohmann::json j = nlohmann::json::parse(*info, nullptr, false);
  EXPECT_EQ(j.value("toc-digest", ""), toc_digest);
  EXPECT_EQ(j.value("compressed-diff-digest", ""), manifest->layers[0].digest);
  // ... and a zstd:chunked layer by its manifest checksum.
  const std::map<std::string, std::string>& zstd_annotations = zstd->manifest.layers[0].annotations;
  const char* checksum_key = zstd_annotations.count(kZstdChunkedChecksumAnnotation)
                                 ? kZstdChunkedChecksumAnnotation
                                 : kZstdChunkedLegacyChecksumAnnotation;
  ASSERT_EQ(zstd_annotations.count(checksum_key), 1u) << zstd->manifest.body;
  const std::string zstd_image = proxy_->host() + "/" + zstd->repo + ":latest";
  info = ReadFile(store.path() + "/" + EncodeBase64(zstd_image) + "/" +
                  zstd_annotations.at(checksum_key) + "/info");
  ASSERT_TRUE(info.ok()) << info.status().ToString() << "\nstore log:\n" << store.Log();
  j = nlohmann::json::parse(*info, nullptr, false);
  EXPECT_EQ(j.value("compressed-diff-digest", ""), zstd->manifest.layers[0].digest);
  EXPECT_EQ(j.value("compression", 0), 4);  // containers/storage's archive.Zstd

  // `blob` returns only bytes verified against the layer digest: with the registry changing a
  // byte of the footer (which no chunk covers), reading it is EIO, never the changed byte.
  const ManifestLayer& small = manifest->layers[big_layer == 0 ? 1 : 0];
  const std::string blob_path = store.path() + "/" + EncodeBase64(image) + "/" + small.digest +
                                "/blob";
  auto original = ReadFile(RegistryBlobPath((*registry)->storage_dir(), small.digest));
  ASSERT_TRUE(original.ok()) << original.status().ToString();
  const uint64_t tail = small.size - 10;
  ASSERT_TRUE(proxy_->SetFlip(small.digest, tail).ok());
  {
    int fd = open(blob_path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << blob_path << ": " << strerror(errno);
    char bytes[10];
    EXPECT_EQ(pread(fd, bytes, sizeof(bytes), static_cast<off_t>(tail)), -1);
    EXPECT_EQ(errno, EIO);
    close(fd);
  }
  ASSERT_TRUE(proxy_->ClearFlips().ok());
  auto served = ReadFile(blob_path);
  ASSERT_TRUE(served.ok()) << served.status().ToString() << "\nstore log:\n" << store.Log();
  EXPECT_TRUE(*served == *original) << "blob differs from the registry's";
  auto blob_digest = FileSha256(blob_path);
  ASSERT_TRUE(blob_digest.ok()) << blob_digest.status().ToString();
  EXPECT_EQ(*blob_digest, small.digest);

  // The layer of the big files stalls; reading one of them fails with EIO, in bounded time.
  ASSERT_TRUE(
      proxy_->SetFault(manifest->layers[big_layer].digest, BlobProxy::Fault::kStall, 1000).ok());
  const auto start = std::chrono::steady_clock::now();
  RunResult stalled = (*podman)->Run(Busybox(image, {"cat", "/data/r-0003m.bin"}), 180);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_FALSE(stalled.ok());
  EXPECT_THAT(stalled.err + stalled.out, HasSubstr("Input/output error")) << stalled.Describe();
  EXPECT_LT(seconds, ScaledSeconds(90)) << "5 attempts of a 1 s stall timeout plus backoff";
  RunResult other = (*podman)->Run(Busybox(image, {"cat", "/etc/motd"}));
  EXPECT_TRUE(other.ok()) << other.Describe() << "\nstore log:\n" << store.Log();
}

}  // namespace
}  // namespace imgfs::test
