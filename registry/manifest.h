// Manifests and indexes of the OCI image spec and Docker's v2 schema 2, parsed from the bytes
// a registry sent (untrusted input: every field is checked; nothing here throws or crashes).
//
// ClassifyManifest tells an image manifest from an index / manifest list using the body's
// mediaType, the Content-Type and, failing both, the JSON shape. Docker's deprecated schema 1
// is recognised and refused with kUnsupported. Parse* return kCorrupt with a message naming
// the bad field. Digests in descriptors must be valid sha256 digests (base/digest.h).
//
// Thread-safety: value types and pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "registry/platform.h"

namespace imgfs::registry {

// Media types.
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kOciLayerNondistributableTar =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr std::string_view kOciLayerNondistributableGzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr std::string_view kOciLayerNondistributableZstd =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerForeignLayerGzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr std::string_view kDockerSchema1 =
    "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view kDockerSchema1Signed =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

// The Accept header value for manifest requests: indexes and manifests of both families, and
// schema 1 so that a registry holding only schema 1 says so instead of 404.
std::string ManifestAcceptHeader();

// A manifest is kept under 4 MiB by registries (distribution's limit); more is refused.
inline constexpr uint64_t kMaxManifestBytes = 4 << 20;
// Layers per image. docker's overlay2 cannot stack more than 128; 1000 leaves room for other
// runtimes while keeping a mount's threads, requests and index memory bounded. More is
// kUnsupported.
inline constexpr size_t kMaxImageLayers = 1000;
// An image config is small (a few KiB; with a long history some hundred KiB).
inline constexpr uint64_t kMaxConfigBytes = 8 << 20;

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;
  std::vector<std::string> urls;
  std::string artifact_type;  // OCI 1.1 "artifactType" ("" when absent)
};

struct ImageManifest {
  int schema_version = 2;
  std::string media_type;  // from the body; "" when the body does not say
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
  // OCI 1.1 artifacts: "artifactType", and the manifest this one refers to ("subject").
  std::string artifact_type;
  std::optional<Descriptor> subject;
};

struct ImageIndex {
  int schema_version = 2;
  std::string media_type;
  std::vector<Descriptor> manifests;
};

enum class ManifestKind { kImage, kIndex };

// The media type of a Content-Type value: parameters dropped, white space trimmed, lower case.
std::string BareContentType(std::string_view content_type);

// `content_type` may carry parameters ("...; charset=utf-8") or be empty.
Result<ManifestKind> ClassifyManifest(std::string_view bytes, std::string_view content_type);
Result<ImageManifest> ParseImageManifest(std::string_view bytes);
Result<ImageIndex> ParseImageIndex(std::string_view bytes);

// The manifest of `index` that best runs on `want` (PlatformMatch; the first of equals).
// Attestation manifests (platform unknown/unknown, or annotated as attestations) and entries
// without a platform are never chosen. kNotFound "no image for platform linux/s390x in <where>;
// available: linux/amd64, linux/arm64/v8" otherwise.
Result<Descriptor> SelectPlatform(const ImageIndex& index, const Platform& want,
                                  std::string_view where = "the image index");

// True for the config media types of container images (OCI and Docker).
bool IsImageConfigMediaType(std::string_view media_type);

// The rootfs.diff_ids of an image config (untrusted JSON), each a valid sha256 digest.
// kCorrupt when the config is not a JSON object, has no rootfs.diff_ids array, or an entry is
// not a digest; the message names what is wrong.
Result<std::vector<std::string>> ParseConfigDiffIds(std::string_view config_bytes);

}  // namespace imgfs::registry
