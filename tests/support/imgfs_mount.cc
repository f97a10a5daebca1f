#include "tests/support/imgfs_mount.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

namespace imgfs::test {
namespace {

std::string Base64(const std::string& in) {
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// The NUL-separated command line of `pid`, split.
std::vector<std::string> CommandLine(const std::string& pid) {
  std::vector<std::string> args;
  auto data = ReadFile("/proc/" + pid + "/cmdline");
  if (!data.ok()) return args;
  size_t start = 0;
  for (size_t i = 0; i < data->size(); ++i) {
    if ((*data)[i] == '\0') {
      args.push_back(data->substr(start, i - start));
      start = i + 1;
    }
  }
  return args;
}

RunOptions ShortRun() {
  RunOptions options;
  options.timeout_seconds = 30;
  return options;
}

}  // namespace

std::string ImgfsBinary() { return IMGFS_BINARY; }

Status CheckImgfsBinary() {
  if (IsExecutable(ImgfsBinary())) return Status::Ok();
  return Status::NotFound(ImgfsBinary() +
                          " is missing: build the imgfs target (scripts/test builds everything)");
}

RunResult RunImgfs(const std::vector<std::string>& args, const std::string& docker_config,
                   const std::vector<std::pair<std::string, std::string>>& env,
                   const std::string& stdin_data) {
  std::vector<std::string> argv = {ImgfsBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions options;
  options.timeout_seconds = 120;
  options.stdin_data = stdin_data;
  if (!docker_config.empty()) {
    options.env.emplace_back("DOCKER_CONFIG", docker_config);
    // podman's auth.json files (registry/credentials.h) are looked for in that empty place
    // too, so the host's never leak in either; a test that wants one sets these itself.
    options.env.emplace_back("XDG_RUNTIME_DIR", docker_config);
    options.env.emplace_back("XDG_CONFIG_HOME", docker_config);
  }
  options.env.insert(options.env.end(), env.begin(), env.end());
  // A proxy configured on the host must not intercept loopback registries.
  options.unset_env = {"http_proxy", "HTTP_PROXY",         "https_proxy",    "HTTPS_PROXY",
                       "ALL_PROXY",  "REGISTRY_AUTH_FILE", "IMGFS_CERTS_DIR"};
  return RunCommand(argv, options);
}

ImgfsMount::ImgfsMount(std::string cache_dir, std::string docker_config)
    : dir_("mount"), cache_dir_(std::move(cache_dir)), docker_config_(std::move(docker_config)) {
  if (docker_config_.empty()) docker_config_ = dir_.MakeDir("docker-config");
  mount_point_ = dir_.MakeDir("mnt");
}

ImgfsMount::~ImgfsMount() {
  if (mounted()) Unmount();
  ForceCleanup();
}

RunResult ImgfsMount::Mount(const std::string& image, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"mount", "--cache", cache_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(image);
  argv.push_back(mount_point_);
  return RunImgfs(argv, docker_config_, env_);
}

RunResult ImgfsMount::Unmount() {
  RunResult r = RunImgfs({"umount", mount_point_}, docker_config_);
  forced_cleanup_ = ForceCleanup();
  return r;
}

Status ImgfsMount::WaitReadAheadIdle(std::chrono::milliseconds timeout) const {
  // The stats xattr of fs/fuse/fuse_fs.h (kStatsXattr), read directly: no process per poll.
  constexpr const char* kStatsXattr = "user.imgfs.stats";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string last;
  for (;;) {
    ssize_t n = ::getxattr(mount_point_.c_str(), kStatsXattr, nullptr, 0);
    if (n > 0) {
      std::string value(static_cast<size_t>(n) + 4096, '\0');
      n = ::getxattr(mount_point_.c_str(), kStatsXattr, value.data(), value.size());
      if (n > 0) {
        value.resize(static_cast<size_t>(n));
        nlohmann::json stats = nlohmann::json::parse(value, nullptr, false);
        if (stats.is_object() && stats.value("readahead_idle", false)) return Status::Ok();
        last = value;
      }
    } else {
      last = std::string("getxattr: ") + std::strerror(errno);
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Unavailable("read-ahead of " + mount_point_ + " still busy after " +
                                 std::to_string(timeout.count()) + " ms; last stats: " + last);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string ImgfsMount::LogTail() const {
  auto log = ReadFile(cache_dir_ + "/imgfs.log");
  if (!log.ok()) return "(no daemon log at " + cache_dir_ + "/imgfs.log)";
  return log->size() > 4000 ? "..." + log->substr(log->size() - 4000) : *log;
}

std::string ImgfsMount::ForceCleanup() {
  std::string forced;
  // Give a daemon that was asked to unmount a moment to exit on its own.
  for (int i = 0; i < 50 && mounted(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (mounted()) {
    forced += "still mounted after imgfs umount: fusermount3 -u -z; ";
    RunCommand({"fusermount3", "-u", "-z", mount_point_}, ShortRun());
  }
  // A daemon whose mount is gone should exit; one that does not would leak between tests.
  for (int i = 0; i < 100 && !ImgfsProcessesFor(mount_point_).empty(); ++i) {
    if (i == 50 && KillImgfsProcessesFor(mount_point_) > 0) {
      forced += "daemon still running 1 s after the unmount: killed; ";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (mounted()) {
    RunCommand({"fusermount3", "-u", "-z", mount_point_}, ShortRun());
  }
  if (mounted()) RunCommand({"umount", "-l", mount_point_}, ShortRun());
  return forced;
}

std::vector<pid_t> ImgfsProcessesFor(const std::string& mount_point) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* d = readdir(proc)) {
    std::string pid = d->d_name;
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    auto args = CommandLine(pid);
    if (args.empty() || args[0].find("imgfs") == std::string::npos) continue;
    for (const auto& a : args) {
      if (a == mount_point) {
        pids.push_back(static_cast<pid_t>(std::stol(pid)));
        break;
      }
    }
  }
  closedir(proc);
  return pids;
}

int KillImgfsProcessesFor(const std::string& mount_point) {
  int killed = 0;
  for (pid_t pid : ImgfsProcessesFor(mount_point)) {
    fprintf(stderr, "killing imgfs process %d still serving %s\n", static_cast<int>(pid),
            mount_point.c_str());
    if (kill(pid, SIGKILL) == 0) ++killed;
  }
  return killed;
}

Status WriteDockerConfig(const std::string& dir, const std::string& host, const std::string& user,
                         const std::string& password) {
  IMGFS_RETURN_IF_ERROR(MakeDirs(dir));
  std::string json = "{\"auths\":{\"" + host + "\":{\"auth\":\"" + Base64(user + ":" + password) +
                     "\"}}}\n";
  return WriteFile(dir + "/config.json", json, 0600);
}

}  // namespace imgfs::test
