// The store's use counts on disk (cli/store_uses.h): what is saved loads back, layers no longer
// in use are left out, and a damaged file is an error naming it, not a crash or made-up counts.
#include "cli/store_uses.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "tests/support/files.h"

namespace imgfs::cli {
namespace {

const std::string kBlob = "sha256:" + std::string(64, 'a');

TEST(StoreUsesTest, SavedCountsLoadBackWithoutTheReleasedOnes) {
  test::TempDir dir("store-uses");
  const std::string path = UsesFilePath(dir.path(), "/mnt/store/");
  EXPECT_EQ(path, UsesFilePath(dir.path(), "/mnt/store"));
  EXPECT_NE(path, UsesFilePath(dir.path(), "/mnt/other"));
  auto none = LoadUses(path);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());

  StoredUses uses;
  uses["127.0.0.1:5000/a:b sha256:" + std::string(64, 'c')] = {kBlob, 2};
  uses["127.0.0.1:5000/a:b sha256:" + std::string(64, 'd')] = {kBlob, 0};
  ASSERT_TRUE(SaveUses(path, "/mnt/store", uses).ok());
  auto loaded = LoadUses(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->size(), 1u);
  const auto& [key, use] = *loaded->begin();
  EXPECT_EQ(key, "127.0.0.1:5000/a:b sha256:" + std::string(64, 'c'));
  EXPECT_EQ(use.blob, kBlob);
  EXPECT_EQ(use.uses, 2);
}

TEST(StoreUsesTest, ADamagedFileIsCorrupt) {
  test::TempDir dir("store-uses");
  const std::string path = dir.Sub("uses.json");
  for (const std::string& text :
       {std::string("{\"layers\": [{\"ref\": \"r\""), std::string("[]"),
        std::string(R"({"layers": [{"ref": "r", "digest": "d", "blob": "nope", "uses": 1}]})"),
        std::string(R"({"layers": [{"ref": "r", "digest": "d", "uses": "1"}]})")}) {
    std::ofstream(path) << text;
    auto loaded = LoadUses(path);
    EXPECT_FALSE(loaded.ok()) << text;
    EXPECT_NE(loaded.status().ToString().find(path), std::string::npos)
        << loaded.status().ToString();
  }
}

}  // namespace
}  // namespace imgfs::cli
