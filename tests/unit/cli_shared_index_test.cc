// Whose shared layer indexes a mount uses when they are found through referrers
// (cli/shared_index.h, TrustsIndexesFrom): registries, repositories and the ones below them.
#include "cli/shared_index.h"

#include <gtest/gtest.h>

namespace imgfs::cli {
namespace {

registry::Reference Ref(const std::string& s) { return *registry::Reference::Parse(s); }

TEST(TrustsIndexesFromTest, RegistriesAndRepositoriesOnly) {
  const std::vector<std::string> trust = {"10.0.0.5:5000", "ghcr.io/org/app", "quay.io/team/"};
  EXPECT_TRUE(TrustsIndexesFrom(trust, Ref("10.0.0.5:5000/any/repo:1")));
  EXPECT_TRUE(TrustsIndexesFrom(trust, Ref("ghcr.io/org/app:1")));
  EXPECT_TRUE(TrustsIndexesFrom(trust, Ref("ghcr.io/org/app/sub:1")));
  EXPECT_TRUE(TrustsIndexesFrom(trust, Ref("quay.io/team/x:1")));
  EXPECT_FALSE(TrustsIndexesFrom(trust, Ref("ghcr.io/org/application:1")));
  EXPECT_FALSE(TrustsIndexesFrom(trust, Ref("ghcr.io/org/other:1")));
  EXPECT_FALSE(TrustsIndexesFrom(trust, Ref("10.0.0.5:5001/any/repo:1")));
  EXPECT_FALSE(TrustsIndexesFrom(trust, Ref("quay.io/teams/x:1")));
  EXPECT_FALSE(TrustsIndexesFrom({}, Ref("10.0.0.5:5000/any/repo:1")));
  EXPECT_FALSE(TrustsIndexesFrom({""}, Ref("10.0.0.5:5000/any/repo:1")));
}

}  // namespace
}  // namespace imgfs::cli
