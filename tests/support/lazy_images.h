// What the lazy-pull tests need to know about eStargz and zstd:chunked images: their
// manifests as the registry holds them, where each file's chunks lie in a layer blob (read
// from the blob with tests/support/toc_layout.py, independently of imgfs), and a big image of
// incompressible files whose conversions are worth pulling lazily.
//
// Thread-safety: plain functions, reentrant. Failure: Status with the tool's or the
// registry's answer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "tests/support/image_builder.h"

namespace imgfs::test {

inline constexpr const char* kEstargzTocDigestAnnotation =
    "containerd.io/snapshot/stargz/toc.digest";
inline constexpr const char* kZstdChunkedChecksumAnnotation =
    "io.github.containers.zstd-chunked.manifest-checksum";
// The key older writers (stargz-snapshotter's converter among them) use.
inline constexpr const char* kZstdChunkedLegacyChecksumAnnotation =
    "io.containers.zstd-chunked.manifest-checksum";

struct ManifestLayer {
  std::string digest;
  uint64_t size = 0;
  std::string media_type;
  std::map<std::string, std::string> annotations;
};

struct RegistryManifest {
  std::string body;        // exactly as served
  std::string media_type;  // its mediaType field
  nlohmann::json json;
  std::vector<ManifestLayer> layers;
};

// GET /v2/<repo>/manifests/<reference> from http://host, accepting OCI and Docker v2 image
// manifests (not indexes).
Result<RegistryManifest> FetchManifest(const std::string& host, const std::string& repo,
                                       const std::string& reference);
// PUT `body` as /v2/<repo>/manifests/<tag> with Content-Type `media_type`; the blobs it names
// must be in the repository already. Returns the manifest's digest.
Result<std::string> PutManifest(const std::string& host, const std::string& repo,
                                const std::string& tag, const std::string& body,
                                const std::string& media_type);

// Where docker-registry's filesystem driver keeps a blob under `storage_dir`.
std::string RegistryBlobPath(const std::string& storage_dir, const std::string& digest);

struct TocChunk {
  uint64_t offset = 0;           // blob offset of the chunk's gzip member / zstd frame
  uint64_t compressed_size = 0;  // up to the next chunk (or the TOC)
  uint64_t chunk_offset = 0;     // offset in the file
  uint64_t chunk_size = 0;
};

struct TocLayout {
  std::string format;  // "estargz" or "zstdchunked"
  uint64_t blob_size = 0;
  uint64_t toc_offset = 0;  // where the TOC starts; the rest of the blob is TOC and footer
  std::map<std::string, std::vector<TocChunk>> files;  // "etc/hello.txt" -> chunks

  // What a minimal client must fetch to learn the layer: the TOC and the footer.
  uint64_t TocAndFooterBytes() const { return blob_size - toc_offset; }
};

// Reads the footer and TOC of the eStargz or zstd:chunked blob in `blob_path`.
Result<TocLayout> ReadTocLayout(const std::string& blob_path);

// The "big" test image, two layers made by umoci (so it is an ordinary gzip image until
// converted):
//   1  etc/motd, docs/changes.txt, data/early-200k.bin (random)
//   2  data/r-*.bin: 13 files of random (incompressible) bytes, 1 KiB to 45 MiB, 112 MiB in
//      all; etc/hello.txt, etc/app/app.conf, docs/guide-*.txt: small text files
// Content is a fixed function of the file name, so every build is the same.
Status BuildBigImage(const OciLayout& layout, const std::string& tag, const std::string& work);
// The content BuildBigImage gives etc/hello.txt.
std::string BigImageHelloText();

// A small image for lazy reads under faults and mirrors, two layers made by umoci:
//   1  one/f0.bin .. one/f5.bin
//   2  two/f0.bin .. two/f5.bin
// each kTwoLayerFileSize incompressible bytes (TwoLayerFileContent(name), fixed per name), so
// that converted to eStargz each file is a chunk of its own and each layer blob (about
// 1.8 MiB) is far bigger than what a mount reads of its tail.
inline constexpr uint64_t kTwoLayerFileSize = 300 * 1024 + 11;
inline constexpr int kTwoLayerFilesPerLayer = 6;
Status BuildTwoLayerImage(const OciLayout& layout, const std::string& tag, const std::string& work);
std::string TwoLayerFileContent(const std::string& name);

}  // namespace imgfs::test
