#include "tests/support/netns.h"

#include <unistd.h>

#include <atomic>

#include "tests/support/process.h"

namespace imgfs::test {
namespace {

std::atomic<int> counter{0};

}  // namespace

Result<std::unique_ptr<NetNamespace>> NetNamespace::Create() {
  if (!IsExecutable("/usr/sbin/ip") && !IsExecutable("/sbin/ip") && !IsExecutable("/usr/bin/ip")) {
    return Status::NotFound("ip (iproute2) not installed: run scripts/setup");
  }
  RunResult used = RunCommand({"ip", "-o", "-4", "addr", "show"});
  if (!used.ok()) return Status::Internal("ip addr show failed: " + used.Describe());
  const int pid = static_cast<int>(::getpid());
  for (int attempt = 0; attempt < 64; ++attempt) {
    int n = counter.fetch_add(1);
    int id = (pid * 7 + n * 13 + attempt) % 2048;  // 2048 /30 subnets of 10.200.0.0/13 x 4
    std::string prefix = "10." + std::to_string(200 + id / 256) + "." + std::to_string(id % 256) +
                         ".";
    if (used.out.find(" " + prefix) != std::string::npos) continue;
    std::unique_ptr<NetNamespace> ns(new NetNamespace());
    std::string tag = std::to_string(pid % 100000) + "n" + std::to_string(n);
    ns->name_ = "imgfs-test-" + tag;
    ns->veth_ = "imv" + tag;  // at most 15 characters
    ns->outer_ = prefix + "1";
    ns->inner_ = prefix + "2";
    std::string peer = ns->veth_ + "p";
    if (peer.size() > 15) return Status::Internal("veth name too long: " + peer);
    Status s = RunOk({"ip", "netns", "add", ns->name_});
    if (!s.ok()) {
      return Status::Unsupported("cannot create a network namespace (needs root): " + s.message());
    }
    for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
             {"ip", "link", "add", ns->veth_, "type", "veth", "peer", "name", peer},
             {"ip", "link", "set", peer, "netns", ns->name_},
             {"ip", "addr", "add", ns->outer_ + "/30", "dev", ns->veth_},
             {"ip", "link", "set", ns->veth_, "up"},
             {"ip", "netns", "exec", ns->name_, "ip", "addr", "add", ns->inner_ + "/30", "dev",
              peer},
             {"ip", "netns", "exec", ns->name_, "ip", "link", "set", peer, "up"},
             {"ip", "netns", "exec", ns->name_, "ip", "link", "set", "lo", "up"}}) {
      IMGFS_RETURN_IF_ERROR(RunOk(step));  // the destructor of `ns` removes what was made
    }
    return ns;
  }
  return Status::Unavailable("no free 10.200.0.0/13 subnet for a test network namespace");
}

NetNamespace::~NetNamespace() {
  if (!veth_.empty()) RunCommand({"ip", "link", "del", veth_});
  if (!name_.empty()) RunCommand({"ip", "netns", "del", name_});
}

std::vector<std::string> NetNamespace::Exec(const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", name_};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

}  // namespace imgfs::test
