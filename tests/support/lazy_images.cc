#include "tests/support/lazy_images.h"

#include <cstdio>
#include <fstream>

#include "base/digest.h"
#include "tests/support/files.h"
#include "tests/support/process.h"
#include "tests/support/test_images.h"

namespace imgfs::test {
namespace {

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kManifestAccept =
    "Accept: application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";

// splitmix64: fast, and good enough that gzip and zstd cannot shrink its output.
class RandomBytes {
 public:
  explicit RandomBytes(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

Status WriteRandomFile(const std::string& path, uint64_t size, uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError("cannot create " + path);
  RandomBytes random(seed);
  std::string buf;
  buf.reserve(1 << 20);
  for (uint64_t written = 0; written < size;) {
    buf.clear();
    while (buf.size() < (1u << 20) && written + buf.size() < size) {
      uint64_t v = random.Next();
      buf.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
    uint64_t n = std::min<uint64_t>(buf.size(), size - written);
    out.write(buf.data(), static_cast<std::streamsize>(n));
    written += n;
  }
  out.close();
  if (!out) return Status::IoError("cannot write " + path);
  return Status::Ok();
}

std::string TextLines(const std::string& what, int lines) {
  std::string s;
  for (int i = 0; i < lines; ++i) {
    s += what + " line " + std::to_string(i) + ": the quick brown fox jumps over the lazy dog\n";
  }
  return s;
}

}  // namespace

Result<RegistryManifest> FetchManifest(const std::string& host, const std::string& repo,
                                       const std::string& reference) {
  RegistryManifest m;
  IMGFS_ASSIGN_OR_RETURN(
      m.body,
      HttpGet("http://" + host + "/v2/" + repo + "/manifests/" + reference, {kManifestAccept}));
  m.json = nlohmann::json::parse(m.body, nullptr, false);
  if (m.json.is_discarded() || !m.json.is_object()) {
    return Status::Corrupt(repo + ":" + reference + ": the manifest is not JSON: " + m.body);
  }
  try {
    m.media_type = m.json.value("mediaType", "");
    for (const auto& l : m.json.at("layers")) {
      ManifestLayer layer;
      layer.digest = l.at("digest").get<std::string>();
      layer.size = l.at("size").get<uint64_t>();
      layer.media_type = l.value("mediaType", "");
      if (l.contains("annotations")) {
        for (const auto& [k, v] : l["annotations"].items()) {
          if (v.is_string()) layer.annotations[k] = v.get<std::string>();
        }
      }
      m.layers.push_back(std::move(layer));
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corrupt(repo + ":" + reference + ": unexpected manifest (" + e.what() +
                           "): " + m.body);
  }
  return m;
}

Result<std::string> PutManifest(const std::string& host, const std::string& repo,
                                const std::string& tag, const std::string& body,
                                const std::string& media_type) {
  TempDir tmp("manifest");
  IMGFS_RETURN_IF_ERROR(WriteFile(tmp.Sub("manifest.json"), body));
  RunResult r = RunCommand({"curl", "-sS", "--max-time", "60", "-o", tmp.Sub("answer"), "-w",
                            "%{http_code}", "-X", "PUT", "-H", "Content-Type: " + media_type,
                            "--data-binary", "@" + tmp.Sub("manifest.json"),
                            "http://" + host + "/v2/" + repo + "/manifests/" + tag});
  if (!r.ok()) return Status::Unavailable(r.Describe());
  if (r.out != "201") {
    auto answer = ReadFile(tmp.Sub("answer"));
    return Status::Unavailable("PUT manifest " + repo + ":" + tag + " answered " + r.out + ": " +
                               (answer.ok() ? *answer : ""));
  }
  return Sha256Digest(body);
}

std::string RegistryBlobPath(const std::string& storage_dir, const std::string& digest) {
  std::string hex(DigestHex(digest));
  return storage_dir + "/docker/registry/v2/blobs/sha256/" + hex.substr(0, 2) + "/" + hex + "/data";
}

Result<TocLayout> ReadTocLayout(const std::string& blob_path) {
  const std::string script = std::string(IMGFS_SOURCE_DIR) + "/tests/support/toc_layout.py";
  RunResult r = RunCommand({kPython, script, blob_path});
  if (!r.ok()) return Status::Unavailable("reading the TOC of " + blob_path + ": " + r.Describe());
  nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return Status::Corrupt("toc_layout.py printed no JSON: " + r.out);
  TocLayout layout;
  try {
    layout.format = j.at("format").get<std::string>();
    layout.blob_size = j.at("blob_size").get<uint64_t>();
    layout.toc_offset = j.at("toc_offset").get<uint64_t>();
    for (const auto& [name, chunks] : j.at("files").items()) {
      std::vector<TocChunk>& out = layout.files[name];
      for (const auto& c : chunks) {
        out.push_back({c.at(0).get<uint64_t>(), c.at(1).get<uint64_t>(), c.at(2).get<uint64_t>(),
                       c.at(3).get<uint64_t>()});
      }
    }
  } catch (const nlohmann::json::exception& e) {
    return Status::Corrupt(std::string("toc_layout.py output: ") + e.what());
  }
  if (layout.toc_offset > layout.blob_size) {
    return Status::Corrupt(blob_path + ": TOC offset past the end of the blob");
  }
  return layout;
}

std::string BigImageHelloText() { return "hello from the big image\n"; }

Status BuildBigImage(const OciLayout& layout, const std::string& tag, const std::string& work) {
  IMGFS_RETURN_IF_ERROR(layout.NewImage(tag));
  // umoci adds one layer per unpack/repack cycle; the small layer goes first, so only a
  // small tree is unpacked twice.
  const std::string bundle = work + "/big-bundle";
  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  std::string root = bundle + "/rootfs";
  for (const char* dir : {"data", "etc", "docs"}) {
    IMGFS_RETURN_IF_ERROR(MakeDirs(root + "/" + dir));
  }
  IMGFS_RETURN_IF_ERROR(WriteFile(root + "/etc/motd", "big image, first layer\n"));
  IMGFS_RETURN_IF_ERROR(WriteFile(root + "/docs/changes.txt", TextLines("change", 80)));
  IMGFS_RETURN_IF_ERROR(WriteRandomFile(root + "/data/early-200k.bin", 200 * 1024 + 9, 99));
  IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  RemoveTree(bundle);

  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  IMGFS_RETURN_IF_ERROR(MakeDirs(root + "/etc/app"));
  // Odd sizes, so that file ends fall inside chunks and pages.
  const std::vector<std::pair<std::string, uint64_t>> random_files = {
      {"r-0001k.bin", 1000},
      {"r-0007k.bin", 7 * 1024 + 3},
      {"r-0064k.bin", 65536},
      {"r-0100k.bin", 100 * 1024 + 17},
      {"r-0300k.bin", 300 * 1024 + 1},
      {"r-0001m.bin", (1u << 20) - 5},
      {"r-0002m.bin", (5u << 19) + 123},
      {"r-0003m.bin", (3u << 20) + 4097},
      {"r-0005m.bin", (5u << 20) + 999},
      {"r-0009m.bin", (9u << 20) + 1},
      {"r-0016m.bin", (16u << 20) - 77},
      {"r-0030m.bin", (30u << 20) + 31},
      {"r-0045m.bin", (45u << 20) + 12345}};
  uint64_t seed = 1;
  for (const auto& [name, size] : random_files) {
    IMGFS_RETURN_IF_ERROR(WriteRandomFile(root + "/data/" + name, size, seed++));
  }
  IMGFS_RETURN_IF_ERROR(WriteFile(root + "/etc/hello.txt", BigImageHelloText()));
  IMGFS_RETURN_IF_ERROR(WriteFile(root + "/etc/app/app.conf", TextLines("setting", 30)));
  for (int i = 0; i < 4; ++i) {
    IMGFS_RETURN_IF_ERROR(WriteFile(root + "/docs/guide-" + std::to_string(i) + ".txt",
                                    TextLines("guide " + std::to_string(i), 50 + 200 * i)));
  }
  IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  RemoveTree(bundle);
  return Status::Ok();
}

std::string TwoLayerFileContent(const std::string& name) {
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (char c : name) x = (x ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  std::string out(kTwoLayerFileSize, '\0');
  for (char& c : out) {  // xorshift64
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

Status BuildTwoLayerImage(const OciLayout& layout, const std::string& tag,
                          const std::string& work) {
  IMGFS_RETURN_IF_ERROR(layout.NewImage(tag));
  for (const std::string dir : {"one", "two"}) {
    const std::string bundle = work + "/two-layer-bundle-" + dir;
    IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
    IMGFS_RETURN_IF_ERROR(MakeDirs(bundle + "/rootfs/" + dir));
    for (int i = 0; i < kTwoLayerFilesPerLayer; ++i) {
      std::string name = dir + "/f" + std::to_string(i) + ".bin";
      IMGFS_RETURN_IF_ERROR(WriteFile(bundle + "/rootfs/" + name, TwoLayerFileContent(name)));
    }
    IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
    RemoveTree(bundle);
  }
  return Status::Ok();
}

}  // namespace imgfs::test
