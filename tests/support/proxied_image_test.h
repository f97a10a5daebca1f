// ProxiedImageTest: the fixture of integration tests that break the path between imgfs and the
// registry. Each test gets the busybox test image pushed to the shared registry, a BlobProxy
// in front of that registry (faults set on its blobs reach only this test), the image's
// manifest and first layer, and a cache directory of its own.
//
// ExpectMountsAndReadsRight is the check after a fault: the image mounts from the same cache
// and equals umoci's unpack of it, so nothing wrong was kept.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "tests/support/blob_proxy.h"
#include "tests/support/files.h"
#include "tests/support/imgfs_mount.h"
#include "tests/support/lazy_images.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"

namespace imgfs::test {

// ProxiedRegistryTest: the fixture of tests that push images of their own to a registry of their
// own and count what imgfs fetches of them through a BlobProxy (StartProxiedRegistry). SetUp
// also checks that the imgfs binary is there.
class ProxiedRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override;

  std::unique_ptr<RegistryServer> registry_;
  std::unique_ptr<BlobProxy> proxy_;
};

// The busybox test image pushed to the shared registry, a BlobProxy of its own in front of that
// registry, and the image's manifest (with at least one layer): what ProxiedImageTest starts
// from, and the blob proxy's own test, which runs no imgfs.
struct ProxiedImage {
  PushedImage image;
  RegistryServer* registry = nullptr;
  std::unique_ptr<BlobProxy> proxy;
  RegistryManifest manifest;
};
Result<ProxiedImage> StartProxiedImage();

class ProxiedImageTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // `image` as served through the proxy.
  std::string Proxied(const PushedImage& image) const;
  std::string Proxied() const { return Proxied(image_); }

  // Clears the proxy's faults, mounts image_ with `mount` (whose cache is cache_), compares
  // the mount with umoci's unpack and unmounts it cleanly.
  void ExpectMountsAndReadsRight(ImgfsMount& mount);

  PushedImage image_;
  RegistryServer* registry_ = nullptr;
  std::unique_ptr<BlobProxy> proxy_;
  RegistryManifest manifest_;
  ManifestLayer layer_;  // the manifest's first layer
  TempDir cache_{"cache"};
};

}  // namespace imgfs::test
