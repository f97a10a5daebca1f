// imgfs pull against the real registry, through the counting proxy: docker's output compared
// line by line with golden transcripts (tests/integration/golden/, ids and digests
// substituted), what each pull really transferred, -q, -a across pages of the tags list,
// docker's errors, and a mount that works from what a pull left with the registry stopped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"
#include "tests/support/proxied_image_test.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"
#include "tests/support/test_world.h"
#include "tests/support/tree_compare.h"

namespace imgfs::test {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = text.find(from, pos)) != std::string::npos; pos += to.size()) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

std::string ShortId(const std::string& digest) { return digest.substr(7, 12); }

// Where a transcript's words come from: the values a run printed, by placeholder.
using Substitutions = std::vector<std::pair<std::string, std::string>>;

// The layer a transcript line is about ("<layer2>: Pull complete" -> "<layer2>"), "" if none.
std::string LayerOf(const std::string& line) {
  if (line.rfind("<layer", 0) != 0) return "";
  return line.substr(0, line.find(':'));
}

// Compares `out`, with `subs` applied, with the golden transcript `name`. Layers are fetched
// in parallel, as docker does, so lines of different layers may interleave differently from
// run to run: the lines before and after the layer lines must be equal, the layer lines the
// same set, each layer's lines in the golden order, and "Pull complete" in layer order.
std::string TranscriptDiff(const std::string& out, const std::string& name,
                           const Substitutions& subs) {
  auto golden = ReadFile(std::string(IMGFS_SOURCE_DIR) + "/tests/integration/golden/" + name);
  if (!golden.ok()) return golden.status().ToString();
  std::string got = out;
  for (const auto& [placeholder, value] : subs) got = Replace(got, value, placeholder);
  std::vector<std::string> want_lines = Lines(*golden), got_lines = Lines(got);
  std::string context = "\n--- golden " + name + ":\n" + *golden + "--- got:\n" + got;
  auto split = [](const std::vector<std::string>& lines) {
    std::vector<std::string> outside, layer_lines, completes;
    std::map<std::string, std::vector<std::string>> per_layer;
    for (const std::string& l : lines) {
      std::string layer = LayerOf(l);
      if (layer.empty()) {
        // Before or after the block: marked so that their position counts.
        outside.push_back((layer_lines.empty() ? "before: " : "after: ") + l);
        continue;
      }
      layer_lines.push_back(l);
      per_layer[layer].push_back(l);
      if (l.find(": Pull complete") != std::string::npos) completes.push_back(l);
    }
    std::multiset<std::string> set(layer_lines.begin(), layer_lines.end());
    return std::make_tuple(outside, set, per_layer, completes);
  };
  auto [want_outside, want_set, want_per_layer, want_completes] = split(want_lines);
  auto [got_outside, got_set, got_per_layer, got_completes] = split(got_lines);
  if (got_outside != want_outside) return "the lines around the layer lines differ" + context;
  if (got_set != want_set) return "the layer lines differ" + context;
  if (got_per_layer != want_per_layer) return "a layer's lines come in another order" + context;
  if (got_completes != want_completes) return "\"Pull complete\" out of layer order" + context;
  return "";
}

class PullTest : public ProxiedRegistryTest {
 protected:
  RunResult Pull(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"pull", "--cache", cache_.path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunImgfs(argv);
  }

  // Blob body bytes the proxy has passed since the last call.
  uint64_t BlobBytesSinceLastCall(std::map<std::string, uint64_t>* per_blob = nullptr) {
    auto requests = proxy_->Requests();
    EXPECT_TRUE(requests.ok()) << requests.status().ToString();
    if (!requests.ok()) return 0;
    uint64_t total = 0;
    for (size_t i = seen_requests_; i < requests->size(); ++i) {
      const ProxiedRequest& r = (*requests)[i];
      if (!r.IsBlobBody()) continue;
      total += r.bytes;
      if (per_blob != nullptr) (*per_blob)[r.digest] += r.bytes;
    }
    seen_requests_ = requests->size();
    return total;
  }

  // <host>, <repo>, <digest> and <layerN> of `repo`:`tag` as the registry holds it.
  Substitutions SubstitutionsFor(const std::string& repo, const std::string& tag,
                                 std::vector<ManifestLayer>* layers = nullptr) {
    auto manifest = FetchManifest(registry_->host(), repo, tag);
    EXPECT_TRUE(manifest.ok()) << manifest.status().ToString();
    if (!manifest.ok()) return {};
    if (layers != nullptr) *layers = manifest->layers;
    // The digest before the host: the host's digits must not eat into it.
    Substitutions subs = {{"<digest>", Sha256Digest(manifest->body)}};
    for (size_t i = 0; i < manifest->layers.size(); ++i) {
      subs.push_back({"<layer" + std::to_string(i + 1) + ">", ShortId(manifest->layers[i].digest)});
    }
    subs.push_back({"<host>", proxy_->host()});
    subs.push_back({"<repo>", repo});
    return subs;
  }

  TempDir cache_{"cache"};
  size_t seen_requests_ = 0;
};

// The standard 3-layer image: docker's lines in docker's order, each layer fetched once; a
// second pull fetches nothing and is "up to date", as is a pull by digest; then, with the
// registry stopped, a mount from what the pull left equals umoci unpack.
TEST_F(PullTest, FirstPullPrintsDockersLinesSecondFetchesNothingMountWorksOffline) {
  auto images = TestWorld::Get().Images("layered");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  auto pushed = (*images)->Push("layered", registry_->host(), "imgfs/pull", "v1");
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  std::vector<ManifestLayer> layers;
  Substitutions subs = SubstitutionsFor("imgfs/pull", "v1", &layers);
  ASSERT_EQ(layers.size(), 3u);
  const std::string image = proxy_->host() + "/imgfs/pull:v1";
  BlobBytesSinceLastCall();

  RunResult first = Pull({image});
  ASSERT_TRUE(first.ok()) << first.Describe();
  std::string diff = TranscriptDiff(first.out, "pull_first.txt", subs);
  EXPECT_EQ(diff, "");
  std::map<std::string, uint64_t> per_blob;
  BlobBytesSinceLastCall(&per_blob);
  for (const ManifestLayer& l : layers) {
    EXPECT_EQ(per_blob[l.digest], l.size) << "layer " << l.digest << " must be fetched exactly "
                                          << "once\n"
                                          << proxy_->Describe();
  }

  RunResult second = Pull({image});
  ASSERT_TRUE(second.ok()) << second.Describe();
  EXPECT_EQ(TranscriptDiff(second.out, "pull_up_to_date.txt", subs), "");
  EXPECT_EQ(BlobBytesSinceLastCall(), 0u) << proxy_->Describe();

  RunResult by_digest = Pull({proxy_->host() + "/imgfs/pull@" + pushed->digest});
  ASSERT_TRUE(by_digest.ok()) << by_digest.Describe();
  EXPECT_EQ(TranscriptDiff(by_digest.out, "pull_by_digest.txt", subs), "");
  EXPECT_EQ(BlobBytesSinceLastCall(), 0u) << proxy_->Describe();

  registry_->Stop();
  ImgfsMount mount(cache_.path());
  RunResult m = mount.Mount(image);  // --pull missing, the default
  ASSERT_TRUE(m.ok()) << m.Describe() << "\ndaemon log:\n" << mount.LogTail();
  TreeDiff tree = CompareTrees((*images)->ReferenceRoot("layered"), mount.path());
  EXPECT_TRUE(tree.empty()) << tree.ToString() << "daemon log:\n" << mount.LogTail();
  EXPECT_GE(tree.entries_compared, 4u);
  EXPECT_EQ(BlobBytesSinceLastCall(), 0u) << proxy_->Describe();
}

// Three layers, the top one different in v2: after v2 is pushed over the tag, a pull
// fetches only that layer and says "Already exists" for the other two.
TEST_F(PullTest, RepushedTagFetchesOnlyTheChangedLayer) {
  auto umoci = UmociBinary();
  ASSERT_TRUE(umoci.ok()) << umoci.status().ToString();
  TempDir work("pull-images");
  auto layout = OciLayout::Init(work.Sub("layout"));
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  ASSERT_TRUE(layout->NewImage("base").ok());
  // A bundle adds one layer to the manifest it was unpacked from: one bundle per layer.
  for (const std::string layer : {"one", "two"}) {
    ASSERT_TRUE(layout->Unpack("base", work.Sub(layer)).ok());
    ASSERT_TRUE(WriteFile(work.Sub(layer + "/rootfs/" + layer), "layer " + layer + "\n").ok());
    ASSERT_TRUE(layout->Repack("base", work.Sub(layer)).ok());
  }
  for (const std::string tag : {"v1", "v2"}) {
    Status s = RunOk({*umoci, "tag", "--image", layout->Ref("base"), tag});
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(layout->Unpack(tag, work.Sub(tag)).ok());
    ASSERT_TRUE(WriteFile(work.Sub(tag + "/rootfs/three"), "layer three of " + tag + "\n").ok());
    s = layout->Repack(tag, work.Sub(tag));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  const std::string dest = registry_->host() + "/imgfs/repushed:latest";
  ASSERT_TRUE(PushImage(*layout, "v1", dest).ok());
  const std::string image = proxy_->host() + "/imgfs/repushed";
  RunResult first = Pull({image});
  ASSERT_TRUE(first.ok()) << first.Describe();
  BlobBytesSinceLastCall();

  auto pushed = PushImage(*layout, "v2", dest);
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  std::vector<ManifestLayer> layers;
  Substitutions subs = SubstitutionsFor("imgfs/repushed", "latest", &layers);
  ASSERT_EQ(layers.size(), 3u);
  RunResult second = Pull({image});
  ASSERT_TRUE(second.ok()) << second.Describe();
  EXPECT_EQ(TranscriptDiff(second.out, "pull_repushed.txt", subs), "");
  std::map<std::string, uint64_t> per_blob;
  BlobBytesSinceLastCall(&per_blob);
  EXPECT_EQ(per_blob[layers[0].digest], 0u) << proxy_->Describe();
  EXPECT_EQ(per_blob[layers[1].digest], 0u) << proxy_->Describe();
  EXPECT_EQ(per_blob[layers[2].digest], layers[2].size) << proxy_->Describe();
}

TEST_F(PullTest, QuietPrintsOnlyTheReference) {
  auto images = TestWorld::Get().Images("busybox");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE((*images)->Push("busybox", registry_->host(), "imgfs/quiet", "latest").ok());
  for (const std::string& arg : {std::string("imgfs/quiet"), std::string("imgfs/quiet:latest")}) {
    RunResult r = Pull({"-q", proxy_->host() + "/" + arg});
    ASSERT_TRUE(r.ok()) << r.Describe();
    EXPECT_EQ(r.out, proxy_->host() + "/imgfs/quiet:latest\n");
  }
}

// More tags than one page of the tags list (the proxy pages it by 2, as Docker Hub pages):
// every tag is pulled, one block each, and the shared layer is fetched once.
TEST_F(PullTest, AllTagsFollowsEveryPageOfTheTagsList) {
  auto images = TestWorld::Get().Images("busybox");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE((*images)->Push("busybox", registry_->host(), "imgfs/tags", "t1").ok());
  auto manifest = FetchManifest(registry_->host(), "imgfs/tags", "t1");
  ASSERT_TRUE(manifest.ok()) << manifest.status().ToString();
  for (const std::string tag : {"t2", "t3", "t4", "t5"}) {
    auto put = PutManifest(registry_->host(), "imgfs/tags", tag, manifest->body,
                           manifest->media_type.empty()
                               ? "application/vnd.oci.image.manifest.v1+json"
                               : manifest->media_type);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
  }
  ASSERT_TRUE(proxy_->SetTagsPageSize(2).ok());
  std::vector<ManifestLayer> layers;
  Substitutions subs = SubstitutionsFor("imgfs/tags", "t1", &layers);
  BlobBytesSinceLastCall();
  seen_requests_ = 0;

  RunResult r = Pull({"--all-tags", proxy_->host() + "/imgfs/tags"});
  ASSERT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(TranscriptDiff(r.out, "pull_all_tags.txt", subs), "");
  auto requests = proxy_->Requests();
  ASSERT_TRUE(requests.ok());
  int pages = 0;
  for (const ProxiedRequest& q : *requests) {
    if (q.path.find("/tags/list") != std::string::npos) ++pages;
  }
  EXPECT_EQ(pages, 3) << "5 tags in pages of 2\n" << proxy_->Describe();
  std::map<std::string, uint64_t> per_blob;
  BlobBytesSinceLastCall(&per_blob);
  ASSERT_EQ(layers.size(), 1u);
  EXPECT_EQ(per_blob[layers[0].digest], layers[0].size) << proxy_->Describe();

  RunResult tagged = Pull({"-a", proxy_->host() + "/imgfs/tags:t1"});
  EXPECT_EQ(tagged.exit_code, 1) << tagged.Describe();
  EXPECT_THAT(tagged.err, HasSubstr("tag can't be used with --all-tags/-a"));
}

TEST_F(PullTest, UnknownTagOrRepositoryFailsWithDockersMessage) {
  auto images = TestWorld::Get().Images("busybox");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE((*images)->Push("busybox", registry_->host(), "imgfs/known", "v1").ok());
  const std::string host = proxy_->host();

  RunResult tag = Pull({host + "/imgfs/known:nope"});
  EXPECT_EQ(tag.exit_code, 1) << tag.Describe();
  EXPECT_EQ(tag.out, "");
  EXPECT_EQ(tag.err, "imgfs: manifest for " + host +
                         "/imgfs/known:nope not found: manifest unknown: manifest unknown\n");

  RunResult repo = Pull({host + "/imgfs/unknown"});
  EXPECT_EQ(repo.exit_code, 1) << repo.Describe();
  EXPECT_EQ(repo.out, "Using default tag: latest\n");
  EXPECT_THAT(repo.err, HasSubstr(host + "/imgfs/unknown"));
  EXPECT_THAT(repo.err, HasSubstr("not found: "));

  RunResult all = Pull({"-a", host + "/imgfs/unknown"});
  EXPECT_EQ(all.exit_code, 1) << all.Describe();
  EXPECT_EQ(all.err, "imgfs: repository " + host +
                         "/imgfs/unknown not found: name unknown: repository name not known "
                         "to registry\n");
}

// After a pull, with the registry stopped: `imgfs ls -R` lists what find lists in umoci's
// unpack of the image, `imgfs cat` of every regular file equals it, and `imgfs cp` of a
// directory copies its files.
TEST_F(PullTest, LsCatAndCpReadThePulledImageOffline) {
  auto images = TestWorld::Get().Images("layered");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  ASSERT_TRUE((*images)->Push("layered", registry_->host(), "imgfs/files", "v1").ok());
  const std::string image = proxy_->host() + "/imgfs/files:v1";
  RunResult pull = Pull({"-q", image});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  registry_->Stop();
  BlobBytesSinceLastCall();

  const std::string root = (*images)->ReferenceRoot("layered");
  RunResult find = RunCommand({"find", root, "-mindepth", "1"});
  ASSERT_TRUE(find.ok()) << find.Describe();
  std::vector<std::string> want;
  for (const std::string& line : Lines(find.out)) want.push_back(line.substr(root.size()));
  std::sort(want.begin(), want.end());
  RunResult ls = RunImgfs({"ls", "--cache", cache_.path(), "-R", image, "/"});
  ASSERT_TRUE(ls.ok()) << ls.Describe();
  std::vector<std::string> got = Lines(ls.out);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);
  ASSERT_GE(want.size(), 10u);
  // ls -l: as coreutils' ls -l with numeric owners and UTC times.
  struct stat hostname {};
  ASSERT_EQ(lstat((root + "/etc/hostname").c_str(), &hostname), 0);
  char when[32];
  struct tm tm {};
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", gmtime_r(&hostname.st_mtime, &tm));
  RunResult long_ls = RunImgfs({"ls", "--cache", cache_.path(), "-l", image, "/etc/hostname"});
  EXPECT_EQ(long_ls.out,
            "-rw-r--r--   1     0     0         23 " + std::string(when) + " /etc/hostname\n")
      << long_ls.Describe();

  int files = 0;
  for (const std::string& path : want) {
    struct stat st;
    ASSERT_EQ(lstat((root + path).c_str(), &st), 0) << path;
    if (!S_ISREG(st.st_mode)) continue;
    ++files;
    auto expected = ReadFile(root + path);
    ASSERT_TRUE(expected.ok()) << expected.status().ToString();
    RunResult cat = RunImgfs({"cat", "--cache", cache_.path(), image, path});
    ASSERT_TRUE(cat.ok()) << cat.Describe();
    EXPECT_TRUE(cat.out == *expected) << path << ": imgfs cat differs from umoci unpack ("
                                      << cat.out.size() << " vs " << expected->size() << " bytes)";
  }
  EXPECT_GE(files, 5);

  TempDir dest("cp");
  RunResult cp = RunImgfs({"cp", "--cache", cache_.path(), image + ":/etc", dest.path()});
  ASSERT_TRUE(cp.ok()) << cp.Describe();
  int copied = 0;
  for (const std::string& path : want) {
    struct stat st;
    if (path.rfind("/etc/", 0) != 0 || lstat((root + path).c_str(), &st) != 0 ||
        !S_ISREG(st.st_mode)) {
      continue;
    }
    ++copied;
    auto copy = ReadFile(dest.path() + path);
    ASSERT_TRUE(copy.ok()) << path << " was not copied: " << copy.status().ToString();
    EXPECT_TRUE(*copy == ReadFile(root + path).value()) << path << " differs from the image's";
  }
  EXPECT_GE(copied, 1);

  RunResult missing = RunImgfs({"cat", "--cache", cache_.path(), image, "/no/such/file"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("no such file or directory in the image: /no/such/file"));
  EXPECT_EQ(BlobBytesSinceLastCall(), 0u) << proxy_->Describe();
}

// imgfs images lists what pulls completed, from the cache alone; rmi forgets it, tag and
// digest form, and says so as docker does.
TEST_F(PullTest, ImagesListsPulledImagesAndRmiForgetsThem) {
  auto images = TestWorld::Get().Images("busybox");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  auto pushed = (*images)->Push("busybox", registry_->host(), "imgfs/listed", "v1");
  ASSERT_TRUE(pushed.ok()) << pushed.status().ToString();
  std::vector<ManifestLayer> layers;
  SubstitutionsFor("imgfs/listed", "v1", &layers);
  ASSERT_EQ(layers.size(), 1u);
  const std::string image = proxy_->host() + "/imgfs/listed:v1";
  RunResult pull = Pull({"-q", image});
  ASSERT_TRUE(pull.ok()) << pull.Describe();
  registry_->Stop();

  RunResult list = RunImgfs({"images", "--cache", cache_.path(), "--format", "json"});
  ASSERT_TRUE(list.ok()) << list.Describe();
  nlohmann::json rows = nlohmann::json::parse(list.out, nullptr, false);
  ASSERT_TRUE(rows.is_array() && rows.size() == 1) << list.out;
  EXPECT_EQ(rows[0]["repository"], proxy_->host() + "/imgfs/listed");
  EXPECT_EQ(rows[0]["tag"], "v1");
  EXPECT_EQ(rows[0]["digest"], pushed->digest);
  EXPECT_EQ(rows[0]["platform"], "linux/" + HostArchitecture());
  EXPECT_EQ(rows[0]["size"], layers[0].size);
  RunResult text = RunImgfs({"images", "--cache", cache_.path()});
  ASSERT_TRUE(text.ok()) << text.Describe();
  EXPECT_EQ(Lines(text.out).size(), 2u) << text.out;

  RunResult rmi = RunImgfs({"rmi", "--cache", cache_.path(), image});
  ASSERT_TRUE(rmi.ok()) << rmi.Describe();
  EXPECT_EQ(rmi.out, "Untagged: " + image + "\nUntagged: " + proxy_->host() + "/imgfs/listed@" +
                         pushed->digest + "\n");
  list = RunImgfs({"images", "--cache", cache_.path(), "--format", "json"});
  ASSERT_TRUE(list.ok()) << list.Describe();
  EXPECT_EQ(list.out, "[]\n");
  RunResult again = RunImgfs({"rmi", "--cache", cache_.path(), image});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err, "imgfs: No such image: " + image + "\n");
}

}  // namespace
}  // namespace imgfs::test
