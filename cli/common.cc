#include "cli/common.h"

#include <cstdlib>
#include <ctime>
#include <iostream>

#include "base/log.h"
#include "cache/cache.h"

namespace imgfs::cli {

int Fail(const Status& status) {
  std::cerr << "imgfs: " << status.message() << "\n";
  return 1;
}

std::string CacheRoot(const CommonOptions& common) {
  return common.cache_dir.empty() ? cache::Cache::DefaultRoot() : common.cache_dir;
}

Result<Target> ParseTarget(const std::string& image, const CommonOptions& common) {
  Target t;
  IMGFS_ASSIGN_OR_RETURN(t.ref, registry::Reference::Parse(image));
  if (common.platform.empty()) {
    t.platform = registry::Platform::Host();
  } else {
    IMGFS_ASSIGN_OR_RETURN(t.platform, registry::Platform::Parse(common.platform));
    t.platform_given = true;
  }
  IMGFS_ASSIGN_OR_RETURN(t.policy, ParsePullPolicy(common.pull));
  return t;
}

Status CheckPlatform(const registry::ResolvedImage& image, const Target& target) {
  if (image.index) return Status::Ok();  // chosen from the index already
  if (registry::PlatformMatch(target.platform, image.platform) > 0) return Status::Ok();
  std::string text = image.ref.String() + " is an image for " + image.platform.String() +
                     " only, not " + target.platform.String();
  if (target.platform_given) return Status::NotFound(text);
  IMGFS_LOG(kWarning, text << " (this host's platform); its programs may not run here");
  return Status::Ok();
}

std::string FamiliarName(const registry::Reference& ref) {
  if (ref.domain != "docker.io") return ref.Repo();
  const std::string kLibrary = "library/";
  if (ref.repository.rfind(kLibrary, 0) == 0 &&
      ref.repository.find('/', kLibrary.size()) == std::string::npos) {
    return ref.repository.substr(kLibrary.size());
  }
  return ref.repository;
}

std::string FamiliarString(const registry::Reference& ref) {
  std::string out = FamiliarName(ref);
  if (!ref.tag.empty()) out += ":" + ref.tag;
  if (!ref.digest.empty()) out += "@" + ref.digest;
  return out;
}

std::string PulledKey(const registry::Reference& ref) {
  return std::string(kPulledPrefix) + ref.String();
}

std::string UtcMinute(int64_t unix_seconds) {
  char out[32] = "?";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  struct tm tm {};
  if (::gmtime_r(&t, &tm) != nullptr) std::strftime(out, sizeof out, "%Y-%m-%d %H:%M", &tm);
  return out;
}

registry::ClientOptions DefaultClientOptions(const CommonOptions& common) {
  registry::ClientOptions options;
  options.stall_timeout_s = common.stall_timeout_s;
  for (const std::string& m : common.registry_mirrors) {
    size_t eq = m.find('=');  // "REGISTRY=URL", as ApplyConfig writes them
    if (eq != std::string::npos) options.mirrors[m.substr(0, eq)].push_back(m.substr(eq + 1));
  }
  if (!common.certs_dir.empty()) {
    options.certs_dir = common.certs_dir;
  } else if (const char* env = std::getenv("IMGFS_CERTS_DIR"); env != nullptr && *env != '\0') {
    options.certs_dir = env;
  }
  options.insecure_registries = common.insecure_registries;
  return options;
}

}  // namespace imgfs::cli
