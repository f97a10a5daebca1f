// Compares two directory trees entry by entry: what a mounted image shows against the
// reference tree `umoci unpack` extracted from the same image.
//
// Compared for every path (lstat, never following symlinks): presence, file type, permission
// bits including setuid/setgid/sticky, uid/gid, mtime seconds (and nanoseconds when both sides
// have a non-zero value: a file system that keeps only seconds is not wrong), size and sha256
// of regular files, link count of non-directories, symlink targets, device numbers, and all
// extended attributes (names and values). Hard links: files that share an inode in the
// reference must share one in the other tree, and files that do not must not.
//
// Deliberately not compared, because they describe the host file system rather than the image:
// directory sizes and link counts, atime/ctime, inode numbers themselves, and the mtime of the
// root directory (umoci creates rootfs/ itself before extraction; an image rarely has a "./"
// entry, so its time is the unpack time).
//
// The walk stays on the file system of each root. Thread-safety: plain function, reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace imgfs::test {

struct TreeCompareOptions {
  size_t max_reported = 50;
  bool compare_contents = true;  // false: skip reading regular files (metadata only)
};

struct TreeDiff {
  std::vector<std::string> differences;  // the first max_reported, "path: what differs"
  size_t total = 0;                      // all differences found
  size_t entries_compared = 0;           // paths seen in the expected tree

  bool empty() const { return total == 0; }
  // All reported differences, one per line, with "... and N more" when truncated.
  std::string ToString() const;
};

TreeDiff CompareTrees(const std::string& expected_root, const std::string& actual_root,
                      const TreeCompareOptions& options = {});

}  // namespace imgfs::test
