// A podman of the tests' own (Debian's podman 4.3 with runc): its storage.conf, containers.conf
// and registries.conf live in a temp dir and reach podman through CONTAINERS_STORAGE_CONF,
// CONTAINERS_CONF and CONTAINERS_REGISTRIES_CONF, so the host's podman storage and settings
// are never touched. Overlay driver; the test registry on 127.0.0.1 is marked insecure
// (plain HTTP); containers get no network (--network none is added to `run`).
//
// With `store` set, storage.conf names it as an additional layer store
// (`additionallayerstores = ["<store>:ref"]`), as README "Run containers with podman" says.
//
// The destructor removes every container and image (so the store sees podman's releases),
// unmounts what podman left mounted under its root and removes the temp dir.
// Not thread-safe; one owner. Failure: a missing podman or runc names scripts/setup.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace imgfs::test {

class PrivatePodman {
 public:
  // `registry_host`: 127.0.0.1:PORT, marked insecure. `store`: "" for none.
  static Result<std::unique_ptr<PrivatePodman>> Create(const std::string& registry_host,
                                                       const std::string& store);
  ~PrivatePodman();
  PrivatePodman(const PrivatePodman&) = delete;
  PrivatePodman& operator=(const PrivatePodman&) = delete;

  // `podman ARGS...` with this podman's configuration, up to `timeout_seconds`.
  RunResult Podman(const std::vector<std::string>& args, int timeout_seconds = 300) const;

  // `podman --log-level=debug run --rm --network none --ulimit ... ARGS...` (limits this machine
  // lets runc set, see podman.cc): its debug log is in err.
  RunResult Run(const std::vector<std::string>& args, int timeout_seconds = 300) const;

  const std::string& graph_root() const { return graph_root_; }

 private:
  PrivatePodman() : dir_("podman") {}
  TempDir dir_;
  std::string graph_root_;
  std::vector<std::pair<std::string, std::string>> env_;
};

}  // namespace imgfs::test
