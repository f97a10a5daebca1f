// Small file-system helpers for tests: temporary directories that clean up after themselves,
// whole-file read/write, content digests, and free TCP ports.
//
// Temporary directories live under /var/tmp, not /tmp: /tmp is often tmpfs, which lacks user.*
// xattrs on older kernels, and the test images need xattrs and hard links to round-trip.
// Removal never descends into another file system, so a mount left behind by a failed test is
// not emptied through FUSE (and the stale mount point stays visible instead of vanishing).
//
// Thread-safety: a TempDir is owned by one thread; the free functions are thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::test {

class TempDir {
 public:
  // Creates /var/tmp/imgfs-test-<prefix>-XXXXXX. A failure aborts the test binary with a
  // message: nothing in a test can proceed without scratch space.
  explicit TempDir(std::string_view prefix = "tmp");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name
  std::string Sub(std::string_view name) const;
  // Creates path()/name (and parents) and returns it.
  std::string MakeDir(std::string_view name) const;

 private:
  std::string path_;
};

// Removes `path` recursively without crossing into other file systems. Missing is OK.
void RemoveTree(const std::string& path);
Status MakeDirs(const std::string& path, int mode = 0755);

Result<std::string> ReadFile(const std::string& path);
Status WriteFile(const std::string& path, std::string_view data, int mode = 0644);
// "sha256:<hex>" of the file's content.
Result<std::string> FileSha256(const std::string& path);

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then close).
Result<int> FreeTcpPort();
// True when something accepts TCP connections on 127.0.0.1:port (or ipv4:port).
bool PortAcceptsConnections(int port);
bool PortAcceptsConnections(const std::string& ipv4, int port);

// True when `path` is a mount point according to /proc/self/mountinfo.
bool IsMountPoint(const std::string& path);

}  // namespace imgfs::test
