// PullOutput draws what docker's CLI draws: plain lines on a pipe, lines redrawn in place on a
// terminal (checked by replaying the bytes on a small terminal model), and docker's sizes and
// progress bars.
#include "cli/pull_output.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace imgfs::cli {
namespace {

// Everything written to a PullOutput, read back.
class Captured {
 public:
  Captured() : file_(std::tmpfile()) {}
  ~Captured() { std::fclose(file_); }
  std::FILE* file() { return file_; }
  std::string Text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, file_)) > 0;) out.append(buf, n);
    return out;
  }

 private:
  std::FILE* file_;
};

// The screen a terminal shows after `bytes`: handles \n, \r, ESC[nA, ESC[nB and ESC[2K, which
// is all docker's renderer uses. Fails the test on anything else.
std::vector<std::string> Screen(const std::string& bytes) {
  std::vector<std::string> rows(1);
  size_t row = 0, col = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c == '\n') {
      ++row;
      col = 0;
    } else if (c == '\r') {
      col = 0;
    } else if (c == '\x1b') {
      size_t end = bytes.find_first_of("ABK", i);
      EXPECT_NE(end, std::string::npos) << "unknown escape at " << i;
      if (end == std::string::npos) break;
      int n = std::stoi(bytes.substr(i + 2, end - i - 2));
      if (bytes[end] == 'A') row -= std::min<size_t>(row, static_cast<size_t>(n));
      if (bytes[end] == 'B') row += static_cast<size_t>(n);
      if (bytes[end] == 'K') {
        EXPECT_EQ(n, 2) << "only whole lines are erased";
        if (row < rows.size()) rows[row].clear();
      }
      i = end;
      continue;
    } else {
      if (rows.size() <= row) rows.resize(row + 1);
      std::string& r = rows[row];
      if (r.size() < col + 1) r.resize(col + 1, ' ');
      r[col++] = c;
    }
    if (rows.size() <= row) rows.resize(row + 1);
  }
  while (!rows.empty() && rows.back().empty()) rows.pop_back();
  return rows;
}

TEST(PullOutputTest, PlainOutputIsOneLinePerEventWithoutProgress) {
  Captured cap;
  PullOutput out(PullOutput::Mode::kPlain, cap.file());
  out.Message("latest: Pulling from library/alpine");
  out.LayerStatus("cbdbe7a5bc2a", "Pulling fs layer");
  out.LayerProgress("cbdbe7a5bc2a", "Downloading", 100, 1000, 10);
  out.LayerStatus("cbdbe7a5bc2a", "Pull complete");
  out.Message("Digest: sha256:9a83");
  EXPECT_EQ(cap.Text(),
            "latest: Pulling from library/alpine\n"
            "cbdbe7a5bc2a: Pulling fs layer\n"
            "cbdbe7a5bc2a: Pull complete\n"
            "Digest: sha256:9a83\n");
}

TEST(PullOutputTest, QuietPrintsNothing) {
  Captured cap;
  PullOutput out(PullOutput::Mode::kQuiet, cap.file());
  out.Message("latest: Pulling from library/alpine");
  out.LayerStatus("cbdbe7a5bc2a", "Pulling fs layer");
  EXPECT_EQ(cap.Text(), "");
}

TEST(PullOutputTest, TerminalRedrawsEachLayerLineInPlace) {
  Captured cap;
  PullOutput out(PullOutput::Mode::kTerminal, cap.file());
  out.Message("latest: Pulling from library/alpine");
  out.LayerStatus("aaaaaaaaaaaa", "Pulling fs layer");
  out.LayerStatus("bbbbbbbbbbbb", "Pulling fs layer");
  out.LayerProgress("aaaaaaaaaaaa", "Downloading", 500, 1000, 100);
  std::vector<std::string> mid = Screen(cap.Text());
  ASSERT_EQ(mid.size(), 3u);
  EXPECT_EQ(mid[1].rfind("aaaaaaaaaaaa: Downloading ", 0), 0u) << mid[1];
  EXPECT_NE(mid[1].find("500B/1kB"), std::string::npos) << mid[1];
  EXPECT_EQ(mid[2], "bbbbbbbbbbbb: Pulling fs layer ");
  out.LayerStatus("bbbbbbbbbbbb", "Pull complete");
  out.LayerStatus("aaaaaaaaaaaa", "Pull complete");
  out.Message("Digest: sha256:9a83");
  // A new block (pull -a's next tag) starts below, never redrawing the old one.
  out.Message("v2: Pulling from library/alpine");
  out.LayerStatus("aaaaaaaaaaaa", "Already exists");
  EXPECT_EQ(Screen(cap.Text()), (std::vector<std::string>{
                                    "latest: Pulling from library/alpine",
                                    "aaaaaaaaaaaa: Pull complete ",
                                    "bbbbbbbbbbbb: Pull complete ",
                                    "Digest: sha256:9a83",
                                    "v2: Pulling from library/alpine",
                                    "aaaaaaaaaaaa: Already exists ",
                                }));
}

TEST(PullOutputTest, SizesAreDockersDecimalUnits) {
  EXPECT_EQ(HumanSize(0), "0B");
  EXPECT_EQ(HumanSize(999), "999B");
  EXPECT_EQ(HumanSize(1000), "1kB");
  EXPECT_EQ(HumanSize(32768), "32.77kB");
  EXPECT_EQ(HumanSize(3408000), "3.408MB");
  EXPECT_EQ(HumanSize(2.5e9), "2.5GB");
}

TEST(PullOutputTest, ProgressTextIsDockersBarNumbersAndTimeLeft) {
  const std::string bar = "[" + std::string(25, '=') + ">" + std::string(25, ' ') + "] ";
  EXPECT_EQ(ProgressText(1000000, 2000000, 1000, 200), bar + "     1MB/2MB 1s");
  EXPECT_EQ(ProgressText(1000000, 2000000, 1000, 80), "     1MB/2MB 1s");  // no room for a bar
  EXPECT_EQ(ProgressText(1000000, 2000000, 1000, 40), "     1MB/2MB");
  EXPECT_EQ(ProgressText(1000, 2000000, 1000, 80), "     1kB/2MB 33m19s");
  EXPECT_EQ(ProgressText(2000000, 2000000, 1000, 80), "     2MB/2MB");  // done: no time left
  EXPECT_EQ(ProgressText(3000, 0, 10, 80), "     3kB");                 // size unknown
  EXPECT_EQ(ProgressText(0, 0, 0, 80), "");
}

}  // namespace
}  // namespace imgfs::cli
