#include "cli/store_uses.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
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
  // Fields are looked up with find: operator[] of a const json on a missing key is undefined.
  auto string_field = [](const nlohmann::json& l, const char* key) -> const std::string* {
    auto it = l.find(key);
    return it != l.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
  };
  for (const nlohmann::json& l : doc["layers"]) {
    const std::string* ref = l.is_object() ? string_field(l, "ref") : nullptr;
    const std::string* digest = l.is_object() ? string_field(l, "digest") : nullptr;
    const std::string* blob = l.is_object() ? string_field(l, "blob") : nullptr;
    auto count = l.is_object() ? l.find("uses") : l.end();
    if (ref == nullptr || digest == nullptr || blob == nullptr || count == l.end() ||
        !count->is_number_integer()) {
      return Status::Corrupt("use counts in " + path + ": a malformed entry " + l.dump());
    }
    IMGFS_RETURN_IF_ERROR(ValidateDigest(*blob).WithContext("use counts in " + path));
    const int64_t n = count->get<int64_t>();
    if (n > 0 && n <= std::numeric_limits<int>::max()) {
      uses[*ref + " " + *digest] = {*blob, static_cast<int>(n)};
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
