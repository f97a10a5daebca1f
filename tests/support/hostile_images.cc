#include "tests/support/hostile_images.h"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/support/files.h"
#include "tests/support/lazy_images.h"
#include "tests/support/process.h"

namespace imgfs::test {
namespace {

// The digest of a file, read in pieces.
Result<std::string> FileDigest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError("cannot read " + path);
  Sha256 hash;
  std::string buf(1 << 20, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    hash.Update(std::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  return hash.FinishDigest();
}

}  // namespace

Result<std::string> PushBlobFile(const std::string& host, const std::string& repo,
                                 const std::string& path) {
  IMGFS_ASSIGN_OR_RETURN(std::string digest, FileDigest(path));
  TempDir tmp("blob-push");
  IMGFS_ASSIGN_OR_RETURN(
      std::string code,
      RunCurl({"-o", tmp.Sub("answer"), "-D", tmp.Sub("headers"), "-w", "%{http_code}", "-X",
               "POST", "http://" + host + "/v2/" + repo + "/blobs/uploads/"},
              120));
  if (code != "202")
    return Status::Unavailable("POST blob upload of " + repo + " answered " + code);
  IMGFS_ASSIGN_OR_RETURN(std::string headers, ReadFile(tmp.Sub("headers")));
  std::string location;
  size_t at = 0;
  while (at < headers.size()) {
    size_t end = headers.find('\n', at);
    std::string line = headers.substr(at, end == std::string::npos ? std::string::npos : end - at);
    at = end == std::string::npos ? headers.size() : end + 1;
    if (line.size() > 9 &&
        (line.compare(0, 9, "Location:") == 0 || line.compare(0, 9, "location:") == 0)) {
      location = line.substr(9);
      while (!location.empty() && (location.front() == ' ')) location.erase(0, 1);
      while (!location.empty() && (location.back() == '\r' || location.back() == ' '))
        location.pop_back();
    }
  }
  if (location.empty()) return Status::Unavailable("blob upload of " + repo + " gave no Location");
  if (location.rfind("http", 0) != 0) location = "http://" + host + location;
  location += (location.find('?') == std::string::npos ? "?" : "&") + std::string("digest=") +
              digest;
  IMGFS_ASSIGN_OR_RETURN(code, RunCurl({"-o", tmp.Sub("answer"), "-w", "%{http_code}", "-X", "PUT",
                                        "-H", "Content-Type: application/octet-stream",
                                        "--data-binary", "@" + path, location},
                                       120));
  if (code != "201") {
    auto answer = ReadFile(tmp.Sub("answer"));
    return Status::Unavailable("PUT blob " + digest + " answered " + code + ": " +
                               (answer.ok() ? *answer : ""));
  }
  return digest;
}

Result<std::string> PushBlob(const std::string& host, const std::string& repo,
                             const std::string& bytes) {
  TempDir tmp("blob");
  IMGFS_RETURN_IF_ERROR(WriteFile(tmp.Sub("blob"), bytes));
  return PushBlobFile(host, repo, tmp.Sub("blob"));
}

Result<PushedImage> PushEditedImage(
    const PushedImage& base, const std::string& tag,
    const std::function<void(nlohmann::json* manifest, std::string* config)>& edit) {
  IMGFS_ASSIGN_OR_RETURN(RegistryManifest m, FetchManifest(base.host, base.repo, base.tag));
  nlohmann::json manifest = m.json;
  std::string config_digest = manifest["config"]["digest"].get<std::string>();
  IMGFS_ASSIGN_OR_RETURN(std::string config, HttpGet("http://" + base.host + "/v2/" + base.repo +
                                                     "/blobs/" + config_digest));
  const std::string original_config = config;
  edit(&manifest, &config);
  if (config != original_config && manifest["config"]["digest"] == config_digest) {
    IMGFS_ASSIGN_OR_RETURN(std::string digest, PushBlob(base.host, base.repo, config));
    manifest["config"]["digest"] = digest;
    manifest["config"]["size"] = config.size();
  }
  std::string media_type = manifest.value("mediaType", m.media_type);
  if (media_type.empty()) media_type = "application/vnd.oci.image.manifest.v1+json";
  IMGFS_ASSIGN_OR_RETURN(std::string digest,
                         PutManifest(base.host, base.repo, tag, manifest.dump(), media_type));
  return PushedImage{base.host, base.repo, tag, digest};
}

Result<PushedImage> PushOneLayerImage(const std::string& host, const std::string& repo,
                                      const std::string& tag, const std::string& layer_path,
                                      const std::string& diff_id) {
  IMGFS_ASSIGN_OR_RETURN(std::string layer, PushBlobFile(host, repo, layer_path));
  std::error_code ec;
  const uint64_t layer_size = std::filesystem::file_size(layer_path, ec);
  if (ec) return Status::IoError("cannot stat " + layer_path + ": " + ec.message());
  nlohmann::json config = {{"architecture", HostArchitecture()},
                           {"os", "linux"},
                           {"rootfs", {{"type", "layers"}, {"diff_ids", {diff_id}}}}};
  std::string config_bytes = config.dump();
  IMGFS_ASSIGN_OR_RETURN(std::string config_digest, PushBlob(host, repo, config_bytes));
  nlohmann::json manifest = {{"schemaVersion", 2},
                             {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                             {"config",
                              {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                               {"digest", config_digest},
                               {"size", config_bytes.size()}}},
                             {"layers",
                              {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                                {"digest", layer},
                                {"size", layer_size}}}}};
  IMGFS_ASSIGN_OR_RETURN(
      std::string digest,
      PutManifest(host, repo, tag, manifest.dump(), "application/vnd.oci.image.manifest.v1+json"));
  return PushedImage{host, repo, tag, digest};
}

Result<uint64_t> WriteZeroBomb(const std::string& path, uint64_t member_bytes, int members) {
  z_stream zs{};
  if (deflateInit2(&zs, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY) != Z_OK) {
    return Status::Internal("deflateInit2 failed");
  }
  std::string member;
  std::string zeros(1 << 20, '\0');
  std::string out(1 << 20, '\0');
  uint64_t left = member_bytes;
  int flush = Z_NO_FLUSH;
  do {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, zeros.size()));
    left -= n;
    flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    zs.next_in = reinterpret_cast<Bytef*>(zeros.data());
    zs.avail_in = static_cast<uInt>(n);
    do {
      zs.next_out = reinterpret_cast<Bytef*>(out.data());
      zs.avail_out = static_cast<uInt>(out.size());
      deflate(&zs, flush);
      member.append(out.data(), out.size() - zs.avail_out);
    } while (zs.avail_out == 0);
  } while (flush != Z_FINISH);
  deflateEnd(&zs);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  for (int i = 0; i < members; ++i)
    f.write(member.data(), static_cast<std::streamsize>(member.size()));
  if (!f) return Status::IoError("cannot write " + path);
  return static_cast<uint64_t>(member.size()) * static_cast<uint64_t>(members);
}

}  // namespace imgfs::test
