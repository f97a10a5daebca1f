#include "tests/support/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "tests/support/sanitizer.h"

extern char** environ;

namespace imgfs::test {
namespace {

// Everything the child needs, prepared before fork() so that the child only calls
// async-signal-safe functions.
struct ExecPlan {
  std::vector<std::string> args;
  std::vector<std::string> env_strings;
  std::vector<char*> argv;
  std::vector<char*> envp;
};

ExecPlan MakePlan(const std::vector<std::string>& args,
                  const std::vector<std::pair<std::string, std::string>>& env,
                  const std::vector<std::string>& unset_env) {
  ExecPlan plan;
  plan.args = args;
  std::map<std::string, std::string> vars;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string s(*e);
    size_t eq = s.find('=');
    if (eq == std::string::npos) continue;
    vars[s.substr(0, eq)] = s.substr(eq + 1);
  }
  for (const auto& name : unset_env) vars.erase(name);
  for (const auto& [k, v] : env) vars[k] = v;
  for (const auto& [k, v] : vars) plan.env_strings.push_back(k + "=" + v);
  for (auto& a : plan.args) plan.argv.push_back(a.data());
  plan.argv.push_back(nullptr);
  for (auto& e : plan.env_strings) plan.envp.push_back(e.data());
  plan.envp.push_back(nullptr);
  return plan;
}

std::string ReadAllFd(int fd) {
  std::string data;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    data.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return data;
}

// Child side: wire fds, exec, and on failure report errno through `err_pipe`.
[[noreturn]] void ExecChild(const ExecPlan& plan, int in_fd, int out_fd, int err_fd,
                            const char* cwd, int err_pipe, bool new_group) {
  if (new_group) setpgid(0, 0);
  // Restore default signal handling: gtest or the parent may have changed it, and a shell
  // starts a background job (`scripts/test &`) with SIGINT and SIGQUIT ignored, which exec
  // keeps: a test that interrupts its command would then wait for nothing.
  for (int sig : {SIGPIPE, SIGINT, SIGQUIT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (in_fd >= 0) dup2(in_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  if (cwd != nullptr && chdir(cwd) != 0) {
    int e = errno;
    (void)!write(err_pipe, &e, sizeof e);
    _exit(127);
  }
  execvpe(plan.argv[0], plan.argv.data(), plan.envp.data());
  int e = errno;
  (void)!write(err_pipe, &e, sizeof e);
  _exit(127);
}

// Returns the errno the child reported before exec, or 0 when exec succeeded.
int ReadExecError(int err_pipe_read) {
  int e = 0;
  ssize_t n;
  do {
    n = read(err_pipe_read, &e, sizeof e);
  } while (n < 0 && errno == EINTR);
  close(err_pipe_read);
  return n == sizeof e ? e : 0;
}

}  // namespace

std::string JoinArgs(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    if (a.empty() || a.find_first_of(" \t\"'") != std::string::npos) {
      s += '\'' + a + '\'';
    } else {
      s += a;
    }
  }
  return s;
}

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

std::string RunResult::Describe() const {
  std::string s = "`" + command + "` ";
  if (timed_out) {
    s += "timed out";
  } else if (term_signal != 0) {
    s += "was killed by signal " + std::to_string(term_signal);
  } else {
    s += "exited " + std::to_string(exit_code);
  }
  auto clip = [](const std::string& t) {
    return t.size() > 4000 ? t.substr(0, 2000) + "\n...\n" + t.substr(t.size() - 2000) : t;
  };
  if (!err.empty()) s += "\nstderr: " + clip(err);
  if (!out.empty()) s += "\nstdout: " + clip(out);
  return s;
}

RunResult RunCommand(const std::vector<std::string>& argv, const RunOptions& options) {
  RunResult result;
  result.command = JoinArgs(argv);
  if (argv.empty()) {
    result.exit_code = 127;
    result.err = "empty command";
    return result;
  }
  ExecPlan plan = MakePlan(argv, options.env, options.unset_env);
  int out_fd = memfd_create("imgfs-test-out", MFD_CLOEXEC);
  int err_fd = memfd_create("imgfs-test-err", MFD_CLOEXEC);
  int in_fd = -1;
  if (options.stdin_data.empty()) {
    in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  } else {
    in_fd = memfd_create("imgfs-test-in", MFD_CLOEXEC);
    if (in_fd >= 0) {
      (void)!write(in_fd, options.stdin_data.data(), options.stdin_data.size());
      lseek(in_fd, 0, SEEK_SET);
    }
  }
  int err_pipe[2] = {-1, -1};
  if (out_fd < 0 || err_fd < 0 || in_fd < 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.exit_code = 127;
    result.err = std::string("cannot set up process: ") + strerror(errno);
    for (int fd : {out_fd, err_fd, in_fd}) {
      if (fd >= 0) close(fd);
    }
    return result;
  }
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();
  pid_t pid = fork();
  if (pid == 0) ExecChild(plan, in_fd, out_fd, err_fd, cwd, err_pipe[1], false);
  close(err_pipe[1]);
  close(in_fd);
  if (pid < 0) {
    result.exit_code = 127;
    result.err = std::string("fork failed: ") + strerror(errno);
    close(err_pipe[0]);
    close(out_fd);
    close(err_fd);
    return result;
  }
  int exec_errno = ReadExecError(err_pipe[0]);

  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(
                      static_cast<int64_t>(ScaledSeconds(options.timeout_seconds) * 1000));
  int wstatus = 0;
  std::chrono::milliseconds nap(1);
  for (;;) {
    pid_t r = waitpid(pid, &wstatus, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) break;
    if (std::chrono::steady_clock::now() > deadline) {
      result.timed_out = true;
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(nap);
    if (nap < std::chrono::milliseconds(20)) nap *= 2;
  }
  result.out = ReadAllFd(out_fd);
  result.err = ReadAllFd(err_fd);
  close(out_fd);
  close(err_fd);
  if (exec_errno != 0) {
    result.exit_code = 127;
    result.err = "cannot run " + argv[0] + ": " + strerror(exec_errno);
  } else if (WIFEXITED(wstatus)) {
    result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    result.term_signal = WTERMSIG(wstatus);
    result.exit_code = -1;
  }
  return result;
}

Status RunOk(const std::vector<std::string>& argv, const RunOptions& options) {
  RunResult r = RunCommand(argv, options);
  if (r.ok()) return Status::Ok();
  return Status::Internal(r.Describe());
}

Result<std::string> RunCurl(const std::vector<std::string>& args, int max_time_s) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", std::to_string(max_time_s)};
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult r = RunCommand(argv);
  if (!r.ok()) return Status::Unavailable(r.Describe());
  return r.out;
}

BackgroundProcess::~BackgroundProcess() { Stop(); }

Status BackgroundProcess::Start(const std::vector<std::string>& argv,
                                const std::string& stdout_path, const std::string& stderr_path,
                                const std::vector<std::pair<std::string, std::string>>& env) {
  if (argv.empty()) return Status::InvalidArgument("empty command");
  ExecPlan plan = MakePlan(argv, env, {});
  int out_fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  int in_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int err_pipe[2] = {-1, -1};
  if (out_fd < 0 || err_fd < 0 || in_fd < 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    Status s = Status::IoError("cannot open log files " + stdout_path + ", " + stderr_path + ": " +
                               strerror(errno));
    for (int fd : {out_fd, err_fd, in_fd}) {
      if (fd >= 0) close(fd);
    }
    return s;
  }
  pid_t pid = fork();
  if (pid == 0) ExecChild(plan, in_fd, out_fd, err_fd, nullptr, err_pipe[1], true);
  close(err_pipe[1]);
  close(in_fd);
  close(out_fd);
  close(err_fd);
  if (pid < 0) {
    close(err_pipe[0]);
    return Status::IoError(std::string("fork failed: ") + strerror(errno));
  }
  // Also set the group from the parent so a Stop() right after Start() cannot miss it.
  setpgid(pid, pid);
  int exec_errno = ReadExecError(err_pipe[0]);
  pid_ = pid;
  if (exec_errno != 0) {
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return Status::NotFound("cannot run " + argv[0] + ": " + strerror(exec_errno));
  }
  return Status::Ok();
}

bool BackgroundProcess::running() {
  if (pid_ <= 0) return false;
  int wstatus;
  pid_t r = waitpid(pid_, &wstatus, WNOHANG);
  if (r == pid_) {
    kill(-pid_, SIGKILL);  // helpers left behind by the leader
    pid_ = -1;
    return false;
  }
  return true;
}

void BackgroundProcess::Stop(int grace_ms) {
  if (pid_ <= 0) return;
  kill(-pid_, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(grace_ms);
  int wstatus;
  for (;;) {
    pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  kill(-pid_, SIGKILL);
  pid_ = -1;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool WaitUntil(const std::function<bool()>& done, double seconds) {
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(ScaledSeconds(seconds) * 1e6));
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace imgfs::test
