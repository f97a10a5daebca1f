#include "tests/support/podman.h"

#include <sys/mount.h>
#include <sys/resource.h>

#include <fstream>
#include <sstream>

namespace imgfs::test {

Result<std::unique_ptr<PrivatePodman>> PrivatePodman::Create(const std::string& registry_host,
                                                             const std::string& store) {
  for (const char* tool : {"/usr/bin/podman", "/usr/sbin/runc", "/usr/bin/conmon"}) {
    if (!IsExecutable(tool)) {
      return Status::NotFound(std::string(tool) +
                              " missing: podman and runc not installed: run "
                              "scripts/setup");
    }
  }
  std::unique_ptr<PrivatePodman> p(new PrivatePodman());
  const TempDir& d = p->dir_;
  p->graph_root_ = d.MakeDir("graph");
  std::string storage = "[storage]\ndriver = \"overlay\"\nrunroot = \"" + d.MakeDir("run") +
                        "\"\ngraphroot = \"" + p->graph_root_ + "\"\n[storage.options]\n";
  if (!store.empty()) storage += "additionallayerstores = [\"" + store + ":ref\"]\n";
  IMGFS_RETURN_IF_ERROR(WriteFile(d.Sub("storage.conf"), storage));
  std::string containers =
      "[containers]\nnetns = \"none\"\n[engine]\nruntime = \"runc\"\n"
      "cgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"" +
      d.Sub("events.log") + "\"\ntmp_dir = \"" + d.MakeDir("tmp") + "\"\nstatic_dir = \"" +
      d.MakeDir("static") + "\"\nvolume_path = \"" + d.MakeDir("volumes") + "\"\n";
  IMGFS_RETURN_IF_ERROR(WriteFile(d.Sub("containers.conf"), containers));
  std::string registries = "unqualified-search-registries = []\n[[registry]]\nlocation = \"" +
                           registry_host + "\"\ninsecure = true\n";
  IMGFS_RETURN_IF_ERROR(WriteFile(d.Sub("registries.conf"), registries));
  p->env_ = {{"CONTAINERS_STORAGE_CONF", d.Sub("storage.conf")},
             {"CONTAINERS_CONF", d.Sub("containers.conf")},
             {"CONTAINERS_REGISTRIES_CONF", d.Sub("registries.conf")},
             {"XDG_RUNTIME_DIR", d.MakeDir("xdg")},
             {"TMPDIR", d.Sub("tmp")}};
  return p;
}

RunResult PrivatePodman::Podman(const std::vector<std::string>& args, int timeout_seconds) const {
  std::vector<std::string> argv = {"/usr/bin/podman"};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions options;
  options.env = env_;
  options.timeout_seconds = timeout_seconds;
  return RunCommand(argv, options);
}

RunResult PrivatePodman::Run(const std::vector<std::string>& args, int timeout_seconds) const {
  // A sandboxed machine (no CAP_SYS_RESOURCE) does not let runc raise RLIMIT_NOFILE to
  // podman's default (1048576), and refuses even this process's own RLIMIT_NPROC; lowering
  // always works. Containers get this process's open-file limit and 4096 processes.
  struct rlimit nofile;
  getrlimit(RLIMIT_NOFILE, &nofile);
  std::vector<std::string> argv = {"--log-level=debug",
                                   "run",
                                   "--rm",
                                   "--network",
                                   "none",
                                   "--ulimit",
                                   "nofile=" + std::to_string(nofile.rlim_cur) + ":" +
                                       std::to_string(nofile.rlim_cur),
                                   "--ulimit",
                                   "nproc=4096:4096"};
  argv.insert(argv.end(), args.begin(), args.end());
  return Podman(argv, timeout_seconds);
}

PrivatePodman::~PrivatePodman() {
  Podman({"rm", "-af", "-t", "0"}, 60);
  Podman({"rmi", "-af"}, 60);
  // podman keeps its overlay directory mounted (a private bind mount) and may leave container
  // roots mounted after a failure: unmount everything below the temp dir, deepest first.
  std::ifstream mounts("/proc/self/mounts");
  std::vector<std::string> below;
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, target;
    fields >> source >> target;
    if (target.rfind(dir_.path() + "/", 0) == 0) below.push_back(target);
  }
  for (auto it = below.rbegin(); it != below.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
}

}  // namespace imgfs::test
