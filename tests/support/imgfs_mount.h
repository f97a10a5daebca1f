// Running the built imgfs binary from tests, and mounts that are always taken down.
//
// An ImgfsMount owns a fresh mount point under /var/tmp. Its destructor unmounts whatever
// happened in the test: `imgfs umount`, then `fusermount3 -u -z` if the mount is still there,
// then SIGKILL for any imgfs process still serving that mount point, so no test leaves a stale
// mount or a daemon behind. Each mount runs with its own DOCKER_CONFIG (an empty directory
// unless the test gives one), so the host's docker credentials never leak into a test.
//
// Not thread-safe; one owner. Failure of the binary itself is reported through RunResult.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace imgfs::test {

// IMGFS_BINARY, the imgfs executable built with the tests.
std::string ImgfsBinary();
// OK when the binary exists; otherwise says how to build it.
Status CheckImgfsBinary();

// Runs `imgfs ARGS...` with DOCKER_CONFIG=`docker_config` (if not empty; XDG_RUNTIME_DIR and
// XDG_CONFIG_HOME then point there too, so no podman auth.json of the host is read) and extra
// env. REGISTRY_AUTH_FILE, IMGFS_CERTS_DIR and the proxy variables are removed unless `env`
// sets them. `stdin_data` is what imgfs reads on stdin (a password for --password-stdin).
RunResult RunImgfs(const std::vector<std::string>& args, const std::string& docker_config = "",
                   const std::vector<std::pair<std::string, std::string>>& env = {},
                   const std::string& stdin_data = "");

class ImgfsMount {
 public:
  // `cache_dir` is passed as --cache; `docker_config` becomes DOCKER_CONFIG (empty: a fresh
  // empty directory, i.e. no credentials).
  explicit ImgfsMount(std::string cache_dir, std::string docker_config = "");
  ~ImgfsMount();
  ImgfsMount(const ImgfsMount&) = delete;
  ImgfsMount& operator=(const ImgfsMount&) = delete;

  // `imgfs mount --cache DIR ARGS... IMAGE MOUNTPOINT`. Returns once imgfs returned; on
  // success the mount is ready.
  RunResult Mount(const std::string& image, const std::vector<std::string>& args = {});
  // `imgfs umount MOUNTPOINT`, then the fallbacks above. Returns the imgfs umount result.
  RunResult Unmount();

  const std::string& path() const { return mount_point_; }
  // path() + "/" + rel
  std::string Path(const std::string& rel) const { return mount_point_ + "/" + rel; }
  bool mounted() const { return IsMountPoint(mount_point_); }
  const std::string& docker_config() const { return docker_config_; }
  // Variables Mount() sets for imgfs besides DOCKER_CONFIG (PATH, REGISTRY_AUTH_FILE, ...).
  void set_env(std::vector<std::pair<std::string, std::string>> env) { env_ = std::move(env); }
  // What the last Unmount() had to force after `imgfs umount` ("" when imgfs unmounted and
  // its daemon exited by itself), so tests can insist that imgfs cleans up on its own.
  const std::string& forced_cleanup() const { return forced_cleanup_; }
  // Waits until the mount's read-ahead has nothing queued or running (the "readahead_idle"
  // of `imgfs stats`), polling up to `timeout`: what a read started in the background has
  // then reached the registry. kUnavailable naming the last answer when it does not settle.
  Status WaitReadAheadIdle(std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  // The end of the background daemon's log (<cache>/imgfs.log), for failure messages.
  std::string LogTail() const;

 private:
  // Returns what had to be forced, "" when nothing.
  std::string ForceCleanup();

  TempDir dir_;
  std::string cache_dir_;
  std::string docker_config_;
  std::vector<std::pair<std::string, std::string>> env_;
  std::string mount_point_;
  std::string forced_cleanup_;
};

// Writes DIR/config.json with {"auths": {host: {"auth": base64(user:password)}}}.
Status WriteDockerConfig(const std::string& dir, const std::string& host, const std::string& user,
                         const std::string& password);

// imgfs processes whose command line names `mount_point` (their daemons).
std::vector<pid_t> ImgfsProcessesFor(const std::string& mount_point);
// Kills (SIGKILL) imgfs processes whose command line names `mount_point`. Returns how many.
int KillImgfsProcessesFor(const std::string& mount_point);

}  // namespace imgfs::test
