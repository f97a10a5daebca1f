#include "registry/credentials.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/base64.h"
#include "base/log.h"
#include "registry/cred_helper.h"

namespace imgfs::registry {
namespace {

using nlohmann::json;

// docker's ConvertToHostname: drop the scheme and anything after the host.
std::string ConvertToHostname(std::string_view url) {
  if (url.rfind("http://", 0) == 0) {
    url.remove_prefix(7);
  } else if (url.rfind("https://", 0) == 0) {
    url.remove_prefix(8);
  }
  return std::string(url.substr(0, url.find('/')));
}

bool IsDockerHubHost(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

// Whether an `auths` or `credHelpers` key names registry `domain`.
bool KeyNames(const std::string& key, std::string_view domain) {
  std::string host = ConvertToHostname(key);
  return IsDockerHubHost(domain) ? IsDockerHubHost(host) : host == domain;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// The file as a JSON object: nullopt when missing; kInvalidArgument when not an object.
Result<std::optional<json>> ReadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::optional<json>();
  std::stringstream ss;
  ss << in.rdbuf();
  json doc = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status::InvalidArgument("invalid docker config " + path + ": not a JSON object");
  }
  return std::optional<json>(std::move(doc));
}

// The helper configured for `domain` in `doc`: its credHelpers entry, else credsStore.
std::string HelperFor(const json& doc, std::string_view domain) {
  if (auto helpers = doc.find("credHelpers"); helpers != doc.end() && helpers->is_object()) {
    for (auto it = helpers->begin(); it != helpers->end(); ++it) {
      if (KeyNames(it.key(), domain) && it.value().is_string()) {
        return it.value().get<std::string>();
      }
    }
  }
  if (auto store = doc.find("credsStore"); store != doc.end() && store->is_string()) {
    return store->get<std::string>();
  }
  return "";
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
  c.source = path;
  return std::optional<Credentials>(std::move(c));
}

// The credentials for `domain` in one config.json / auth.json document.
Result<std::optional<Credentials>> LookupIn(const json& doc, const std::string& path,
                                            std::string_view domain) {
  const std::string server = CredentialServerKey(domain);
  if (std::string helper = HelperFor(doc, domain); !helper.empty()) {
    if (std::optional<Credentials> c = HelperGet(helper, server)) {
      c->source = "docker-credential-" + helper;
      return c;
    }
  }
  auto auths = doc.find("auths");
  if (auths == doc.end() || !auths->is_object()) return std::optional<Credentials>();
  // An exact key first (docker writes exactly this one), then any key naming the same host.
  if (auto exact = auths->find(server); exact != auths->end()) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, FromAuthEntry(*exact, path, server));
    if (c) return c;
  }
  for (auto it = auths->begin(); it != auths->end(); ++it) {
    if (!KeyNames(it.key(), domain)) continue;
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, FromAuthEntry(it.value(), path, it.key()));
    if (c) return c;
  }
  return std::optional<Credentials>();
}

// Replaces `path` with `doc`, mode 0600, through a temporary file and rename.
Status WriteConfig(const std::string& path, const json& doc) {
  std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && ::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::Unavailable("cannot create " + dir + ": " + std::strerror(errno));
  }
  std::string tmp = path + ".XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) return Status::Unavailable("cannot write " + path + ": " + std::strerror(errno));
  std::string text = doc.dump(1, '\t') + "\n";
  size_t done = 0;
  int err = ::fchmod(fd, 0600) == 0 ? 0 : errno;
  while (err == 0 && done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  ::close(fd);
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return Status::Unavailable("cannot write " + path + ": " + std::strerror(err));
  }
  return Status::Ok();
}

}  // namespace

std::string DockerConfigDir(std::string_view configured) {
  if (!configured.empty()) return std::string(configured);
  if (std::string env = Env("DOCKER_CONFIG"); !env.empty()) return env;
  return Env("HOME") + "/.docker";
}

Result<std::string> RegistryFromArgument(std::string_view arg) {
  std::string host = ConvertToHostname(arg);
  if (arg.empty() || IsDockerHubHost(host)) return std::string("docker.io");
  if (host.empty()) {
    return Status::InvalidArgument("'" + std::string(arg) + "' names no registry host");
  }
  return host;
}

std::string CredentialServerKey(std::string_view domain) {
  if (IsDockerHubHost(domain)) return "https://index.docker.io/v1/";
  return std::string(domain);
}

std::vector<std::string> PodmanAuthFiles() {
  if (std::string file = Env("REGISTRY_AUTH_FILE"); !file.empty()) return {file};
  std::vector<std::string> out;
  if (std::string runtime = Env("XDG_RUNTIME_DIR"); !runtime.empty()) {
    out.push_back(runtime + "/containers/auth.json");
  } else {
    out.push_back("/run/containers/" + std::to_string(::getuid()) + "/auth.json");
  }
  std::string config = Env("XDG_CONFIG_HOME");
  if (config.empty()) config = Env("HOME") + "/.config";
  out.push_back(config + "/containers/auth.json");
  return out;
}

Result<std::optional<Credentials>> LookupCredentials(std::string_view config_dir,
                                                     std::string_view domain) {
  std::vector<std::string> files = {DockerConfigDir(config_dir) + "/config.json"};
  for (std::string& f : PodmanAuthFiles()) files.push_back(std::move(f));
  for (const std::string& path : files) {
    IMGFS_ASSIGN_OR_RETURN(std::optional<json> doc, ReadConfig(path));
    if (!doc) continue;
    IMGFS_ASSIGN_OR_RETURN(std::optional<Credentials> c, LookupIn(*doc, path, domain));
    if (c) return c;
  }
  return std::optional<Credentials>();
}

Result<std::string> StoreCredentials(std::string_view config_dir, std::string_view domain,
                                     const Credentials& c) {
  const std::string path = DockerConfigDir(config_dir) + "/config.json";
  const std::string server = CredentialServerKey(domain);
  IMGFS_ASSIGN_OR_RETURN(std::optional<json> read, ReadConfig(path));
  json doc = read ? std::move(*read) : json::object();
  if (!doc.contains("auths") || !doc["auths"].is_object()) doc["auths"] = json::object();
  json& auths = doc["auths"];
  // The new entry replaces whatever named this registry under another spelling.
  for (auto it = auths.begin(); it != auths.end();) {
    it = KeyNames(it.key(), domain) ? auths.erase(it) : std::next(it);
  }
  std::string where = path;
  json entry = json::object();
  if (std::string helper = HelperFor(doc, domain); !helper.empty()) {
    IMGFS_RETURN_IF_ERROR(HelperStore(helper, server, c));
    where = "docker-credential-" + helper;
  } else {
    if (!c.username.empty() || !c.password.empty()) {
      entry["auth"] = EncodeBase64(c.username + ":" + c.password);
    }
    if (!c.identity_token.empty()) entry["identitytoken"] = c.identity_token;
  }
  auths[server] = std::move(entry);
  IMGFS_RETURN_IF_ERROR(WriteConfig(path, doc));
  return where;
}

Result<bool> EraseCredentials(std::string_view config_dir, std::string_view domain) {
  const std::string path = DockerConfigDir(config_dir) + "/config.json";
  IMGFS_ASSIGN_OR_RETURN(std::optional<json> doc, ReadConfig(path));
  if (!doc) return false;
  bool removed = false;
  if (std::string helper = HelperFor(*doc, domain); !helper.empty()) {
    Status erased = HelperErase(helper, CredentialServerKey(domain));
    if (erased.ok()) {
      removed = true;
    } else {
      IMGFS_LOG(kInfo, erased.message());
    }
  }
  auto auths = doc->find("auths");
  if (auths != doc->end() && auths->is_object()) {
    for (auto it = auths->begin(); it != auths->end();) {
      if (KeyNames(it.key(), domain)) {
        it = auths->erase(it);
        removed = true;
      } else {
        ++it;
      }
    }
  }
  if (removed) IMGFS_RETURN_IF_ERROR(WriteConfig(path, *doc));
  return removed;
}

}  // namespace imgfs::registry
