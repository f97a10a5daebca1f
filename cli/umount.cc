#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cli/commands.h"
#include "cli/common.h"

namespace imgfs::cli {

int RunUmount(const std::string& mountpoint) {
  // fusermount3 works for root and for the user who mounted; it also refuses paths that are
  // not FUSE mounts, with a clear message of its own.
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Status::IoError(std::string("fork: ") + std::strerror(errno)));
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", "--", mountpoint.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return 0;
  if (::geteuid() == 0 && ::umount2(mountpoint.c_str(), 0) == 0) return 0;
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
    return Fail(Status::Unavailable("fusermount3 not found: install fuse3 (scripts/setup)"));
  }
  return Fail(Status::InvalidArgument("could not unmount " + mountpoint));
}

}  // namespace imgfs::cli
