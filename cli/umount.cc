#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"

namespace imgfs::cli {
namespace {

// Runs `fusermount3 ARGS... -- MOUNTPOINT`; its exit status, 127 when it cannot be run.
int Fusermount(const std::vector<std::string>& args, const std::string& mountpoint) {
  pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    std::vector<const char*> argv = {"fusermount3"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back("--");
    argv.push_back(mountpoint.c_str());
    argv.push_back(nullptr);
    ::execvp("fusermount3", const_cast<char* const*>(argv.data()));
    ::_exit(127);
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 1;
}

// A FUSE mount whose daemon has died answers every request with ENOTCONN. statfs always asks
// the daemon; a stat may be answered from the kernel's attribute cache.
bool IsDeadMount(const std::string& path) {
  struct statfs st;
  // ECONNABORTED while the kernel is still aborting the connection.
  return ::statfs(path.c_str(), &st) != 0 && (errno == ENOTCONN || errno == ECONNABORTED);
}

}  // namespace

int RunUmount(const std::string& mountpoint) {
  // fusermount3 works for root and for the user who mounted; it also refuses paths that are
  // not FUSE mounts, with a clear message of its own.
  int status = Fusermount({"-u"}, mountpoint);
  if (status == 0) return 0;
  if (status == 127) {
    return Fail(Status::Unavailable("fusermount3 not found: install fuse3 (scripts/setup)"));
  }
  if (IsDeadMount(mountpoint)) {
    // The daemon is gone (killed, crashed): nothing can be served any more, but files opened
    // before still hold the mount (EBUSY). Detach it; the kernel frees it once they close.
    if (Fusermount({"-u", "-z"}, mountpoint) == 0) return 0;
    if (::geteuid() == 0 && ::umount2(mountpoint.c_str(), MNT_DETACH) == 0) return 0;
    return Fail(Status::IoError("could not detach the dead mount " + mountpoint + ": " +
                                std::strerror(errno)));
  }
  if (::geteuid() == 0 && ::umount2(mountpoint.c_str(), 0) == 0) return 0;
  return Fail(Status::InvalidArgument("could not unmount " + mountpoint));
}

}  // namespace imgfs::cli
