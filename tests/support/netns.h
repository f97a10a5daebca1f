// A network namespace of the test's own, joined to the test's namespace by a veth pair, so
// that a server can run on a non-loopback address (10.x.y.2) that nothing outside this
// machine ever sees: imgfs then treats it as a remote registry (TLS checked, proxies used).
//
// Create() picks a free /30 in 10.200.0.0/13 (the host side is .1, the namespace side .2),
// names the namespace and veth after the process and a counter, and brings the links and the
// namespace's loopback up. The destructor deletes the namespace, which removes the veth pair;
// processes still running in it must have been stopped first (RegistryServer stops its own).
// Needs root (CAP_NET_ADMIN) and `ip` (iproute2): without them Create() fails saying so.
//
// Not thread-safe; one owner.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace imgfs::test {

class NetNamespace {
 public:
  static Result<std::unique_ptr<NetNamespace>> Create();
  ~NetNamespace();
  NetNamespace(const NetNamespace&) = delete;
  NetNamespace& operator=(const NetNamespace&) = delete;

  const std::string& name() const { return name_; }
  // The namespace's address ("10.201.7.2"), reachable from the test's namespace.
  const std::string& inner_address() const { return inner_; }
  // The test namespace's end of the pair ("10.201.7.1"), reachable from inside.
  const std::string& outer_address() const { return outer_; }
  // `argv` run inside the namespace: {"ip", "netns", "exec", name, argv...}.
  std::vector<std::string> Exec(const std::vector<std::string>& argv) const;

 private:
  NetNamespace() = default;
  std::string name_;
  std::string veth_;
  std::string inner_;
  std::string outer_;
};

}  // namespace imgfs::test
