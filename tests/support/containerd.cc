#include "tests/support/containerd.h"

#include <chrono>
#include <thread>

namespace imgfs::test {

Status PrivateContainerd::Start() {
  for (const char* tool : {"/usr/bin/containerd", "/usr/bin/ctr-remote"}) {
    if (!IsExecutable(tool)) {
      return Status::NotFound(std::string(tool) +
                              " is not installed (packages containerd and "
                              "stargz-snapshotter): run scripts/setup");
    }
  }
  socket_ = dir_.Sub("containerd.sock");
  std::string config =
      "version = 2\n"
      "root = \"" +
      dir_.MakeDir("root") +
      "\"\n"
      "state = \"" +
      dir_.MakeDir("state") +
      "\"\n"
      "disabled_plugins = [\"io.containerd.grpc.v1.cri\", "
      "\"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", "
      "\"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.aufs\"]\n"
      "[grpc]\n  address = \"" +
      socket_ +
      "\"\n"
      "[ttrpc]\n  address = \"" +
      socket_ + ".ttrpc\"\n";
  IMGFS_RETURN_IF_ERROR(WriteFile(dir_.Sub("config.toml"), config));
  IMGFS_RETURN_IF_ERROR(process_.Start({"/usr/bin/containerd", "--config", dir_.Sub("config.toml")},
                                       dir_.Sub("out.log"), dir_.Sub("containerd.log")));
  for (int i = 0; i < 300; ++i) {
    if (RunCommand({"/usr/bin/ctr-remote", "--address", socket_, "version"}).ok()) {
      return Status::Ok();
    }
    if (!process_.running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto log = ReadFile(dir_.Sub("containerd.log"));
  return Status::Unavailable("containerd did not start: " + (log.ok() ? *log : ""));
}

Status PrivateContainerd::Ctr(std::vector<std::string> args) {
  args.insert(args.begin(), {"/usr/bin/ctr-remote", "--address", socket_});
  RunOptions options;
  options.timeout_seconds = 600;
  return RunOk(args, options);
}

Status PrivateContainerd::CtrWithRetries(const std::vector<std::string>& args) {
  constexpr int kAttempts = 3;
  std::string errors;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    Status s = Ctr(args);
    if (s.ok()) return s;
    errors += "\nattempt " + std::to_string(attempt) + ": " + s.ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(500 * attempt));
  }
  return Status::Unavailable("failed " + std::to_string(kAttempts) + " times:" + errors);
}

Status PrivateContainerd::ConvertAndPush(const std::string& source, const std::string& kind,
                                         const std::string& target) {
  IMGFS_RETURN_IF_ERROR(CtrWithRetries({"content", "fetch", "--plain-http", source})
                            .WithContext("fetching " + source));
  IMGFS_RETURN_IF_ERROR(Ctr({"image", "convert", "--" + kind, "--oci", source, target})
                            .WithContext("converting " + source + " to " + kind));
  return CtrWithRetries({"image", "push", "--plain-http", target})
      .WithContext("pushing the " + kind + " conversion " + target);
}

}  // namespace imgfs::test
