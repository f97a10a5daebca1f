// The standard images of the integration tests, built with umoci, pushed with skopeo, and
// their reference trees (umoci unpack of the same image).
//
//   busybox   one layer: static busybox, applet symlinks, /etc/os-release, /README
//   layered   three layers exercising the overlay rules and tar corner cases:
//             1 (umoci repack)  files, dirs, fifo, char device, modes, owners, mtimes
//             2 (hand-written tar, tests/support/make_layer2.py) whiteout, opaque dir, hard
//               links (also to a lower layer), symlinks, >100-byte path, setuid, xattrs,
//               17 MiB file, nanosecond mtime
//             3 (umoci repack)  overwrite, deletion, addition into the replaced dir
//   layered-podman  "layered" without the hard link into a lower layer, which podman's
//             per-layer extraction cannot apply (its pull of "layered" fails)
//   amd64 / arm64  tiny single-layer images whose /etc/arch names the platform, for a
//             multi-platform index
//
// Building takes a few seconds; build one TestImages per test binary (SetUpTestSuite) and
// share it. Not thread-safe. Failure: Status with the failing tool's output.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/image_builder.h"

namespace imgfs::test {

// Where an image was pushed: host/repo, tag and manifest digest.
struct PushedImage {
  std::string host;  // 127.0.0.1:PORT
  std::string repo;  // e.g. "imgfs/layered"
  std::string tag;
  std::string digest;  // sha256:... of the manifest (or index)

  std::string ByTag() const { return host + "/" + repo + ":" + tag; }
  std::string ByDigest() const { return host + "/" + repo + "@" + digest; }
  std::string ByTagAndDigest() const { return host + "/" + repo + ":" + tag + "@" + digest; }
};

// The OCI platform name of this machine ("amd64", "arm64", ...), as Go's GOARCH spells it.
std::string HostArchitecture();

class TestImages {
 public:
  // Builds the named images ("busybox", "layered", "amd64", "arm64") into one layout and
  // unpacks each into its reference tree.
  static Result<std::unique_ptr<TestImages>> Build(const std::vector<std::string>& names);

  const OciLayout& layout() const { return *layout_; }
  // <unpacked>/rootfs: what a mount of `name` must look like.
  std::string ReferenceRoot(const std::string& name) const;

  // Pushes image `name` to host/repo:tag.
  Result<PushedImage> Push(const std::string& name, const std::string& host,
                           const std::string& repo, const std::string& tag,
                           const PushOptions& options = {}) const;

  // Pushes "amd64" and "arm64" (OCI form) and PUTs an OCI index listing both under repo:tag.
  // The returned digest is the index's.
  Result<PushedImage> PushMultiPlatform(const std::string& host, const std::string& repo,
                                        const std::string& tag) const;

 private:
  TestImages() : dir_("images") {}
  TempDir dir_;
  std::unique_ptr<OciLayout> layout_;
  std::map<std::string, std::string> reference_roots_;
};

// Builders, usable on any layout (scripts/demo-like uses, or tests that need a variant).
Status BuildBusyboxImage(const OciLayout& layout, const std::string& tag, const std::string& work);
Status BuildLayeredImage(const OciLayout& layout, const std::string& tag, const std::string& work,
                         bool link_to_lower = true);
Status BuildPlatformImage(const OciLayout& layout, const std::string& tag, const std::string& arch,
                          const std::string& work);

// PUTs an OCI image index naming the given manifests (already in host/repo, fetched back to
// learn their size and media type) as repo:tag. Returns the index digest.
struct IndexEntry {
  std::string digest;
  std::string os;
  std::string architecture;
  std::string variant;
};
Result<std::string> PutIndex(const std::string& host, const std::string& repo,
                             const std::string& tag, const std::vector<IndexEntry>& entries);

// GET of a registry URL with curl (-u creds if given). Returns the body; non-2xx is an error
// that carries the status and body.
Result<std::string> HttpGet(const std::string& url, const std::vector<std::string>& headers = {},
                            const std::string& creds = "");

}  // namespace imgfs::test
