#include "tests/support/image_builder.h"

#include <sys/stat.h>

#include "tests/support/files.h"
#include "tests/support/process.h"

namespace imgfs::test {
namespace {

constexpr const char* kUmoci = "/usr/bin/umoci";
constexpr const char* kSkopeo = "/usr/bin/skopeo";

Status RunTool(const std::vector<std::string>& argv, const std::string& what) {
  RunResult r = RunCommand(argv);
  if (r.ok()) return Status::Ok();
  return Status::Internal(what + " failed: " + r.Describe());
}

}  // namespace

Result<std::string> UmociBinary() {
  if (!IsExecutable(kUmoci)) return Status::NotFound("umoci not installed: run scripts/setup");
  return std::string(kUmoci);
}

Result<std::string> SkopeoBinary() {
  if (!IsExecutable(kSkopeo)) return Status::NotFound("skopeo not installed: run scripts/setup");
  return std::string(kSkopeo);
}

Result<OciLayout> OciLayout::Init(const std::string& dir) {
  IMGFS_ASSIGN_OR_RETURN(std::string umoci, UmociBinary());
  IMGFS_RETURN_IF_ERROR(RunTool({umoci, "init", "--layout", dir}, "umoci init"));
  return OciLayout(dir);
}

Status OciLayout::NewImage(const std::string& tag) const {
  return RunTool({kUmoci, "new", "--image", Ref(tag)}, "umoci new");
}

Status OciLayout::Unpack(const std::string& tag, const std::string& bundle) const {
  return RunTool({kUmoci, "unpack", "--image", Ref(tag), bundle}, "umoci unpack");
}

Status OciLayout::Repack(const std::string& tag, const std::string& bundle) const {
  return RunTool({kUmoci, "repack", "--image", Ref(tag), bundle}, "umoci repack");
}

Status OciLayout::AddRawLayer(const std::string& tag, const std::string& tar_path) const {
  return RunTool({kUmoci, "raw", "add-layer", "--image", Ref(tag), tar_path},
                 "umoci raw add-layer");
}

Status OciLayout::Config(const std::string& tag, const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {kUmoci, "config", "--image", Ref(tag)};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunTool(argv, "umoci config");
}

Result<std::string> PushImage(const OciLayout& layout, const std::string& tag,
                              const std::string& destination, const PushOptions& options) {
  IMGFS_ASSIGN_OR_RETURN(std::string skopeo, SkopeoBinary());
  TempDir tmp("push");
  std::string digest_file = tmp.Sub("digest");
  std::vector<std::string> argv = {
      skopeo,         "copy",
      "--quiet",      "--dest-tls-verify=false",
      "--digestfile", digest_file,
      // A connection the loaded test registry drops mid-push is retried; an error the
      // registry answered (a denied push) is not.
      "--retry-times", "2",
      "--format",     options.format == ManifestFormat::kOci ? "oci" : "v2s2"};
  if (!options.creds.empty()) {
    argv.push_back("--dest-creds");
    argv.push_back(options.creds);
  }
  if (!options.cert_dir.empty()) {
    argv.push_back("--dest-cert-dir");
    argv.push_back(options.cert_dir);
  }
  argv.push_back("oci:" + layout.Ref(tag));
  argv.push_back("docker://" + destination);
  IMGFS_RETURN_IF_ERROR(RunTool(argv, "skopeo copy"));
  IMGFS_ASSIGN_OR_RETURN(std::string digest, ReadFile(digest_file));
  while (!digest.empty() && (digest.back() == '\n' || digest.back() == ' ')) digest.pop_back();
  return digest;
}

}  // namespace imgfs::test
