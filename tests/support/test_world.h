// What most integration tests share within one test binary: one plain-HTTP registry and the
// standard images, built and pushed on first use only.
//
// ctest runs each test in its own process, so everything here is lazy: a test that needs the
// busybox image does not pay for the multi-platform one. The registry and images live until
// the process exits (TestWorld::Reset() from a global test environment's TearDown, or static
// destruction), which stops the registry and removes the temp dirs.
//
// Repositories: imgfs/<name>, tags "oci" (OCI manifest) and "v2" (Docker v2 schema 2);
// imgfs/multi:latest is an OCI index of the amd64 and arm64 images.
// Not thread-safe: call from the test thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/image_builder.h"
#include "tests/support/registry_server.h"
#include "tests/support/test_images.h"

namespace imgfs::test {

class TestWorld {
 public:
  static TestWorld& Get();
  // Runs what was given to AtReset (last first), then stops the registry and drops
  // everything built so far. The integration tests' main (integration_main.cc) calls it once
  // all tests ran.
  static void Reset();
  // `teardown` runs at the next Reset, before the registry stops: for state a test binary
  // builds on top of the world (a converted image, a containerd).
  void AtReset(std::function<void()> teardown);

  Result<RegistryServer*> Registry();
  // Images built from TestImages (busybox, layered, amd64, arm64).
  Result<const TestImages*> Images(const std::string& name);
  // The reference tree of `name` (its TestImages must have been built).
  std::string ReferenceRoot(const std::string& name);
  // `name` pushed to imgfs/<name>:oci or :v2.
  Result<PushedImage> Pushed(const std::string& name, ManifestFormat format);
  // The amd64 + arm64 index at imgfs/multi:latest.
  Result<PushedImage> MultiPlatform();

 private:
  std::unique_ptr<RegistryServer> registry_;
  std::map<std::string, std::unique_ptr<TestImages>> images_;
  std::map<std::string, PushedImage> pushed_;
  std::vector<std::function<void()>> at_reset_;
};

}  // namespace imgfs::test
