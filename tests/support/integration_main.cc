// main() of every integration test binary (tests/integration/*_test.cc, linked by
// tests/CMakeLists.txt instead of gtest_main): runs the tests with the one global environment
// they share, whose TearDown resets the TestWorld (and what was registered with
// TestWorld::AtReset) once every test of the binary has run, so registries stop and temp
// dirs go away before static destruction.
#include <gtest/gtest.h>

#include "tests/support/test_world.h"

namespace {

class WorldEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { imgfs::test::TestWorld::Reset(); }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new WorldEnvironment);
  return RUN_ALL_TESTS();
}
