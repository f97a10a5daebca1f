#include "registry/auth.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/log.h"

extern char** environ;

namespace imgfs::registry {
namespace {

using nlohmann::json;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
}

// docker's ConvertToHostname: drop the scheme and anything after the host.
std::string ConvertToHostname(std::string_view url) {
  if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
  } else if (url.rfind("https://", 0) == 0) {
    url.remove_prefix(8);
  }
  return std::string(url.substr(0, url.find('/')));
}

bool IsDockerHubKey(const std::string& host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

// Runs `docker-credential-<helper> get` with the server key on stdin.
std::optional<Credentials> RunCredentialHelper(const std::string& helper,
                                               const std::string& server) {
  std::string program = "docker-credential-" + helper;
  int in_pair[2];
  int out_pipe[2];
  // A socket for stdin so that a helper exiting early gives EPIPE (MSG_NOSIGNAL), not SIGPIPE.
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in_pair) != 0) return std::nullopt;
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pair[0]);
    close(in_pair[1]);
    return std::nullopt;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pair[1], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::string arg_get = "get";
  char* argv[] = {program.data(), arg_get.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in_pair[1]);
  close(out_pipe[1]);
  if (rc != 0) {
    close(in_pair[0]);
    close(out_pipe[0]);
    IMGFS_LOG(kInfo, "credential helper " << program << " could not be run: " << std::strerror(rc));
    return std::nullopt;
  }
  ssize_t ignored = send(in_pair[0], server.data(), server.size(), MSG_NOSIGNAL);
  (void)ignored;
  close(in_pair[0]);
  std::string output;
  char buf[4096];
  while (output.size() < (1 << 20)) {
    ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(out_pipe[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    IMGFS_LOG(kInfo, "credential helper " << program << " has no credentials for " << server);
    return std::nullopt;
  }
  json doc = json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) {
    IMGFS_LOG(kWarning, "credential helper " << program << " printed something that is not JSON");
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

Result<std::optional<Credentials>> FromAuthEntry(const json& entry, const std::string& path,
                                                 const std::string& key) {
  if (!entry.is_object()) return std::optional<Credentials>();
  Credentials c;
  auto get = [&](const char* name) -> std::string {
    auto it = entry.find(name);
    return it != entry.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string auth = get("auth");
  if (!auth.empty()) {
    std::optional<std::string> decoded = DecodeBase64(auth);
    size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos) {
      return Status::InvalidArgument("invalid docker config " + path + ": auths[\"" + key +
                                     "\"].auth is not base64 of user:password");
    }
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  } else {
    c.username = get("username");
    c.password = get("password");
  }
  c.identity_token = get("identitytoken");
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) {
    return std::optional<Credentials>();
  }
  return std::optional<Credentials>(std::move(c));
}

}  // namespace

std::vector<AuthChallenge> ParseWwwAuthenticate(std::string_view h) {
  std::vector<AuthChallenge> out;
  size_t i = 0;
  const size_t n = h.size();
  auto skip_ws = [&] {
    while (i < n && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  auto read_token = [&] {
    size_t start = i;
    while (i < n && IsTokenChar(h[i])) ++i;
    return h.substr(start, i - start);
  };
  while (i < n) {
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == ',')) ++i;
    if (i >= n) break;
    std::string_view scheme = read_token();
    if (scheme.empty()) {
      ++i;  // not a token: skip it rather than loop on it
      continue;
    }
    AuthChallenge challenge;
    challenge.scheme = Lower(scheme);
    while (i < n) {
      skip_ws();
      size_t param_start = i;
      std::string_view name = read_token();
      skip_ws();
      if (name.empty() || i >= n || h[i] != '=') {
        i = param_start;  // the next challenge's scheme, or garbage
        break;
      }
      ++i;
      skip_ws();
      std::string value;
      if (i < n && h[i] == '"') {
        ++i;
        while (i < n && h[i] != '"') {
          if (h[i] == '\\' && i + 1 < n) ++i;
          value.push_back(h[i]);
          ++i;
        }
        if (i < n) ++i;  // closing quote
      } else {
        while (i < n && h[i] != ',' && h[i] != ' ' && h[i] != '\t') value.push_back(h[i++]);
      }
      challenge.params[Lower(name)] = std::move(value);
      skip_ws();
      if (i < n && h[i] == ',') {
        ++i;
      } else {
        break;
      }
    }
    out.push_back(std::move(challenge));
    if (i < n && h[i] != ',' && h[i] != ' ' && h[i] != '\t' && !IsTokenChar(h[i])) ++i;
  }
  return out;
}

std::string DockerConfigDir(std::string_view configured) {
  if (!configured.empty()) return std::string(configured);
  if (const char* env = std::getenv("DOCKER_CONFIG"); env != nullptr && *env != '\0') return env;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "") + "/.docker";
}

std::string CredentialServerKey(std::string_view domain) {
  if (domain == "docker.io") return "https://index.docker.io/v1/";
  return std::string(domain);
}

Result<std::optional<Credentials>> LookupCredentials(std::string_view config_dir,
                                                     std::string_view domain) {
  std::string path = DockerConfigDir(config_dir) + "/config.json";
  std::ifstream in(path);
  if (!in) return std::optional<Credentials>();
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::InvalidArgument("invalid docker config " + path + ": not a JSON object");
  }
  const std::string server = CredentialServerKey(domain);
  const bool hub = domain == "docker.io";

  std::string helper;
  if (auto helpers = doc.find("credHelpers"); helpers != doc.end() && helpers->is_object()) {
    for (auto it = helpers->begin(); it != helpers->end(); ++it) {
      std::string host = ConvertToHostname(it.key());
      bool match = hub ? IsDockerHubKey(host) : host == domain;
      if (match && it.value().is_string()) {
        helper = it.value().get<std::string>();
        break;
      }
    }
  }
  if (helper.empty()) {
    if (auto store = doc.find("credsStore"); store != doc.end() && store->is_string()) {
      helper = store->get<std::string>();
    }
  }
  if (!helper.empty()) {
    if (std::optional<Credentials> c = RunCredentialHelper(helper, server)) return c;
  }

  auto auths = doc.find("auths");
  if (auths == doc.end() || !auths->is_object()) return std::optional<Credentials>();
  // An exact key first (docker writes exactly this one), then any key naming the same host.
  if (auto exact = auths->find(server); exact != auths->end()) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, FromAuthEntry(*exact, path, server));
    if (c) return c;
  }
  for (auto it = auths->begin(); it != auths->end(); ++it) {
    std::string host = ConvertToHostname(it.key());
    bool match = hub ? IsDockerHubKey(host) : host == domain;
    if (!match) continue;
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, FromAuthEntry(it.value(), path, it.key()));
    if (c) return c;
  }
  return std::optional<Credentials>();
}

}  // namespace imgfs::registry
