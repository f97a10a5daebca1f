#include "cli/store_uses.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/log.h"

namespace imgfs::cli {

std::string UsesFilePath(const std::string& cache_root, const std::string& mountpoint) {
  std::error_code ec;
  std::string absolute = std::filesystem::absolute(mountpoint, ec).lexically_normal().string();
  if (ec) absolute = mountpoint;
  if (absolute.size() > 1 && absolute.back() == '/') absolute.pop_back();
  const std::string hex(DigestHex(Sha256Digest(absolute)));
  return cache_root + "/store/uses-" + hex.substr(0, 16) + ".json";
}

Result<StoredUses> LoadUses(const std::string& path) {
  StoredUses uses;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return uses;
    return Status::Unavailable("cannot read " + path + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc["layers"].is_array()) {
    return Status::Corrupt("use counts in " + path + " are not the JSON the store writes");
  }
  for (const nlohmann::json& l : doc["layers"]) {
    if (!l.is_object() || !l["ref"].is_string() || !l["digest"].is_string() ||
        !l["blob"].is_string() || !l["uses"].is_number_integer()) {
      return Status::Corrupt("use counts in " + path + ": a malformed entry " + l.dump());
    }
    const std::string blob = l["blob"].get<std::string>();
    IMGFS_RETURN_IF_ERROR(ValidateDigest(blob).WithContext("use counts in " + path));
    const int n = l["uses"].get<int>();
    if (n > 0) {
      uses[l["ref"].get<std::string>() + " " + l["digest"].get<std::string>()] = {blob, n};
    }
  }
  return uses;
}

Status SaveUses(const std::string& path, const std::string& mountpoint, const StoredUses& uses) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& [key, use] : uses) {
    if (use.uses <= 0) continue;
    const size_t space = key.find(' ');
    layers.push_back({{"ref", key.substr(0, space)},
                      {"digest", key.substr(space + 1)},
                      {"blob", use.blob},
                      {"uses", use.uses}});
  }
  const std::string text = nlohmann::json{{"mountpoint", mountpoint}, {"layers", layers}}.dump(1) +
                           "\n";
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  if (ec)
    return Status::Unavailable("cannot create the directory of " + path + ": " + ec.message());
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(temp.c_str(), "w");
  if (f == nullptr)
    return Status::Unavailable("cannot write " + temp + ": " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size() && std::fflush(f) == 0 &&
            ::fsync(::fileno(f)) == 0;
  const int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (ok && ::rename(temp.c_str(), path.c_str()) == 0) return Status::Ok();
  ::unlink(temp.c_str());
  return Status::Unavailable("cannot write " + path + ": " + std::strerror(ok ? errno : err));
}

}  // namespace imgfs::cli
