#include "registry/cred_helper.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "base/log.h"

extern char** environ;

namespace imgfs::registry {
namespace {

using nlohmann::json;

constexpr size_t kMaxHelperOutput = 1 << 20;

struct HelperRun {
  bool started = false;
  int exit_code = -1;
  std::string output;  // stdout
  std::string error;   // why it could not be started
};

// Runs `docker-credential-<helper> <action>` with `input` on stdin.
HelperRun Run(const std::string& helper, const std::string& action, const std::string& input) {
  HelperRun run;
  std::string program = "docker-credential-" + helper;
  int in_pair[2];
  int out_pipe[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) {
    run.error = std::strerror(errno);
    return run;
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    run.error = std::strerror(errno);
    close(in_pair[0]);
    close(in_pair[1]);
    return run;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pair[1], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string arg = action;
  char* argv[] = {program.data(), arg.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in_pair[1]);
  close(out_pipe[1]);
  if (rc != 0) {
    close(in_pair[0]);
    close(out_pipe[0]);
    run.error = program + " could not be run: " + std::strerror(rc);
    return run;
  }
  run.started = true;
  size_t sent = 0;
  while (sent < input.size()) {
    ssize_t n = send(in_pair[0], input.data() + sent, input.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  close(in_pair[0]);
  char buf[4096];
  while (run.output.size() < kMaxHelperOutput) {
    ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    run.output.append(buf, static_cast<size_t>(n));
  }
  close(out_pipe[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  run.exit_code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  return run;
}

std::string Trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

Status Failed(const std::string& helper, const std::string& action, const HelperRun& run) {
  if (!run.started) return Status::Unavailable("credential helper " + run.error);
  std::string said = Trimmed(run.output);
  return Status::Unavailable("credential helper docker-credential-" + helper + " " + action +
                             " failed (exit " + std::to_string(run.exit_code) + ")" +
                             (said.empty() ? "" : ": " + said));
}

}  // namespace

std::optional<Credentials> HelperGet(const std::string& helper, const std::string& server) {
  HelperRun run = Run(helper, "get", server);
  if (!run.started || run.exit_code != 0) {
    IMGFS_LOG(kInfo, Failed(helper, "get", run).message()
                         << " (no credentials from it for " << server << ")");
    return std::nullopt;
  }
  json doc = json::parse(run.output, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    IMGFS_LOG(kWarning, "credential helper docker-credential-"
                            << helper << " printed something that is not JSON");
    return std::nullopt;
  }
  Credentials c;
  auto user = doc.find("Username");
  auto secret = doc.find("Secret");
  if (user != doc.end() && user->is_string()) c.username = user->get<std::string>();
  if (secret != doc.end() && secret->is_string()) c.password = secret->get<std::string>();
  if (c.username == "<token>") {
    c.identity_token = c.password;
    c.username.clear();
    c.password.clear();
  }
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::nullopt;
  return c;
}

Status HelperStore(const std::string& helper, const std::string& server, const Credentials& c) {
  json doc = json::object();
  doc["ServerURL"] = server;
  if (!c.identity_token.empty()) {
    doc["Username"] = "<token>";
    doc["Secret"] = c.identity_token;
  } else {
    doc["Username"] = c.username;
    doc["Secret"] = c.password;
  }
  HelperRun run = Run(helper, "store", doc.dump());
  if (!run.started || run.exit_code != 0) return Failed(helper, "store", run);
  return Status::Ok();
}

Status HelperErase(const std::string& helper, const std::string& server) {
  HelperRun run = Run(helper, "erase", server);
  if (!run.started || run.exit_code != 0) return Failed(helper, "erase", run);
  return Status::Ok();
}

}  // namespace imgfs::registry
