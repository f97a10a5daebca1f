#include "base/strings.h"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace imgfs {
namespace {

std::vector<std::string> Pieces(std::string_view text, char sep) {
  std::vector<std::string> out;
  for (std::string_view part : Split(text, sep)) out.emplace_back(part);
  return out;
}

using V = std::vector<std::string>;

TEST(SplitTest, CutsAtEverySeparator) {
  EXPECT_EQ(Pieces("usr/bin/env", '/'), (V{"usr", "bin", "env"}));
  EXPECT_EQ(Pieces("/etc/docker/certs.d:/etc/containers/certs.d", ':'),
            (V{"/etc/docker/certs.d", "/etc/containers/certs.d"}));
  EXPECT_EQ(Pieces("no-separator", '/'), (V{"no-separator"}));
}

TEST(SplitTest, KeepsEmptyPieces) {
  EXPECT_EQ(Pieces("", '/'), (V{""}));
  EXPECT_EQ(Pieces("/", '/'), (V{"", ""}));
  EXPECT_EQ(Pieces("a//b", '/'), (V{"a", "", "b"}));
  EXPECT_EQ(Pieces("/a/", '/'), (V{"", "a", ""}));
  EXPECT_EQ(Pieces(",,", ','), (V{"", "", ""}));
}

TEST(SplitTest, PiecesAreViewsIntoTheText) {
  std::string text = "ab:cd";
  auto it = Split(text, ':').begin();
  EXPECT_EQ(it->data(), text.data());
  ++it;
  EXPECT_EQ(it->data(), text.data() + 3);
  EXPECT_EQ(++it, Split(text, ':').end());
}

TEST(SplitTest, IsAForwardRange) {
  SplitView parts = Split("x.y.z", '.');
  std::vector<std::string_view> all(parts.begin(), parts.end());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2], "z");
  // Walking it again gives the same pieces.
  EXPECT_EQ(std::distance(parts.begin(), parts.end()), 3);
}

}  // namespace
}  // namespace imgfs
