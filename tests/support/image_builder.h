// Building and pushing real OCI images with the real tools: umoci edits an OCI image layout,
// skopeo pushes it to a registry in OCI or Docker v2 (schema 2) form.
//
// An OciLayout is a directory holding one layout with any number of tags. The usual cycle is
// Unpack(tag, bundle) -> change bundle/rootfs -> Repack(tag, bundle), one layer per Repack
// (umoci keeps an mtree in the bundle, so a bundle may be repacked several times). Layers that
// umoci would not produce (opaque whiteouts) are written as tar files by the caller and added
// verbatim with AddRawLayer. The reference tree of an image is Unpack(tag, dir)/rootfs.
//
// Failure: every method returns the tool's stderr in its Status; a missing tool gives
// "... not installed: run scripts/setup". Not thread-safe (umoci locks the layout anyway).
#pragma once

#include <string>
#include <vector>

#include "base/status.h"

namespace imgfs::test {

// umoci / skopeo paths, or an error naming scripts/setup.
Result<std::string> UmociBinary();
Result<std::string> SkopeoBinary();

class OciLayout {
 public:
  // Creates a new layout at `dir` (which must not exist yet).
  static Result<OciLayout> Init(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // "dir:tag", the umoci/skopeo-oci name of a tagged image.
  std::string Ref(const std::string& tag) const { return dir_ + ":" + tag; }

  // An image with no layers.
  Status NewImage(const std::string& tag) const;
  // Extracts the image into `bundle` (bundle/rootfs); `bundle` must not exist yet.
  Status Unpack(const std::string& tag, const std::string& bundle) const;
  // Adds one layer with the changes made under bundle/rootfs since the last Unpack/Repack.
  Status Repack(const std::string& tag, const std::string& bundle) const;
  // Appends an uncompressed tar as one (gzip-compressed) layer, byte for byte as written.
  Status AddRawLayer(const std::string& tag, const std::string& tar_path) const;
  // `umoci config --image dir:tag ARGS...` (e.g. {"--architecture", "arm64"}).
  Status Config(const std::string& tag, const std::vector<std::string>& args) const;

 private:
  explicit OciLayout(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

enum class ManifestFormat { kOci, kDockerV2 };

struct PushOptions {
  ManifestFormat format = ManifestFormat::kOci;
  std::string creds;     // "user:password"; empty: anonymous
  std::string cert_dir;  // client.cert/client.key for a registry that asks for them
};

// Pushes layout:tag to docker://`destination` (e.g. "127.0.0.1:5000/repo:tag") over plain
// HTTP or unverified TLS and returns the digest of the manifest as stored in the registry.
Result<std::string> PushImage(const OciLayout& layout, const std::string& tag,
                              const std::string& destination, const PushOptions& options = {});

}  // namespace imgfs::test
