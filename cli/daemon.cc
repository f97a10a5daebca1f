#include "cli/daemon.h"

#include <fcntl.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>

#include "base/log.h"
#include "cli/common.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace imgfs::cli {
namespace {

// glibc's malloc raises its mmap threshold to the largest block freed so far (up to 32 MiB):
// after the first decoded unit of a few MiB is freed, every later one comes from an arena and
// stays there, fragmented, when it is freed. A mount reading a whole image then held 2-3x the
// bytes it had live (docs/architecture.md, "Memory of a mount"). So in a serving process,
// blocks of kMallocMmapThreshold or more (units, fetched ranges) are mapped on their own and
// unmapped when freed; setting the threshold also fixes it (no dynamic raise) and keeps the
// trim threshold at its default. The arenas are bounded for every command (cli/main.cc).
constexpr int kMallocMmapThreshold = 256 << 10;

void BoundMalloc() { ::mallopt(M_MMAP_THRESHOLD, kMallocMmapThreshold); }

void WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// The parent's side: everything the child writes to the pipe until it closes it.
int WaitForChild(pid_t pid, int read_fd) {
  std::string message;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(read_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    message.append(buf, static_cast<size_t>(n));
  }
  ::close(read_fd);
  if (message == "ok") return 0;
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (message.empty()) message = "the mount process ended before the mount was ready";
  std::cerr << "imgfs: " << message << "\n";
  return 1;
}

[[noreturn]] void ServeInChild(const std::string& what, const std::string& log_file,
                               const ServeFunction& serve, int ready_fd, pid_t parent) {
  // Until it is ready the child lives only for the command waiting on it: when that command
  // ends (Ctrl-C, SIGTERM, SIGKILL, a timeout) the child gets SIGTERM and no half-made mount
  // lingers, retrying a registry for nobody.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) ::_exit(1);  // the parent was gone before the line above
  ::setsid();
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
  }
  Status s = serve([&] {
    ::prctl(PR_SET_PDEATHSIG, 0);  // the parent's exit after "ok" must not end the mount
    WriteAll(ready_fd, "ok");
    ::close(ready_fd);
    ready_fd = -1;
    int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd >= 0) {
      ::dup2(log_fd, 2);
      ::close(log_fd);
    } else if (devnull >= 0) {
      ::dup2(devnull, 2);
    }
  });
#if defined(__SANITIZE_ADDRESS__)
  // _exit skips LeakSanitizer's check at exit: a sanitized daemon (scripts/test --sanitize)
  // reports its leaks here, as a foreground mount does when it returns.
  __lsan_do_leak_check();
#endif
  if (ready_fd >= 0) {
    WriteAll(ready_fd, s.ok() ? std::string("the mount ended before it was ready") : s.message());
    ::close(ready_fd);
    ::_exit(1);
  }
  if (!s.ok()) IMGFS_LOG(kError, what << " ended: " << s.message());
  ::_exit(s.ok() ? 0 : 1);
}

}  // namespace

int RunInBackground(const std::string& what, const std::string& log_file,
                    const ServeFunction& serve) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return Fail(Status::IoError(std::string("pipe: ") + std::strerror(errno)));
  }
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Status::IoError(std::string("fork: ") + std::strerror(errno)));
  if (pid > 0) {
    ::close(pipefd[1]);
    return WaitForChild(pid, pipefd[0]);
  }
  ::close(pipefd[0]);
  ServeInChild(what, log_file, serve, pipefd[1], parent);
}

int RunServing(bool foreground, const std::string& what, const std::string& log_file,
               const ServeFunction& serve) {
  BoundMalloc();
  if (!foreground) return RunInBackground(what, log_file, serve);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGHUP, SIG_DFL);
  Status s = serve([] {});
  return s.ok() ? 0 : Fail(s);
}

}  // namespace imgfs::cli
