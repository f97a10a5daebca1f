// TempCacheTest: the fixture of unit tests that need a Cache of their own: SetUp opens one in a
// fresh temporary directory (cache_ at root_ = dir_ + "/cache", dir_ a TempDir), TearDown closes
// it; the directory goes with the fixture. A derived SetUp calls TempCacheTest::SetUp first.
//
// Header-only, so that the support library does not link the cache module: only tests that
// link it (cache_*, and modules above it) include this.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "cache/cache.h"
#include "tests/support/files.h"

namespace imgfs::test {

class TempCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = cache::Cache::Open(root_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cache_ = std::move(c).value();
  }
  void TearDown() override { cache_.reset(); }

  TempDir tmp_{"cache"};
  const std::string dir_ = tmp_.path();
  const std::string root_ = tmp_.Sub("cache");
  std::unique_ptr<cache::Cache> cache_;
};

}  // namespace imgfs::test
