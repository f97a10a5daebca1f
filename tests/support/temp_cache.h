// TempCacheTest: the fixture of unit tests that need a Cache of their own: SetUp opens one in a
// fresh temporary directory (cache_ at root_ = dir_ + "/cache"), TearDown closes it and removes
// the directory. A derived SetUp calls TempCacheTest::SetUp first.
//
// Header-only, so that the support library does not link the cache module: only tests that
// link it (cache_*, and modules above it) include this.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>

#include "cache/cache.h"

namespace imgfs::test {

class TempCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/imgfs-cache-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/cache";
    auto c = cache::Cache::Open(root_);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cache_ = std::move(c).value();
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string dir_, root_;
  std::unique_ptr<cache::Cache> cache_;
};

}  // namespace imgfs::test
