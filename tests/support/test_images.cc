#include "tests/support/test_images.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "tests/support/process.h"

namespace imgfs::test {
namespace {

constexpr const char* kBusybox = "/bin/busybox";

Status Errno(const std::string& what) { return Status::IoError(what + ": " + strerror(errno)); }

// Small wrappers so the image recipes below read as a list of what the image holds.
class RootfsWriter {
 public:
  explicit RootfsWriter(std::string root) : root_(std::move(root)) {}

  Status Dir(const std::string& rel, int mode = 0755) {
    IMGFS_RETURN_IF_ERROR(MakeDirs(P(rel)));
    if (chmod(P(rel).c_str(), static_cast<mode_t>(mode)) != 0) return Errno("chmod " + rel);
    return Status::Ok();
  }
  Status File(const std::string& rel, std::string_view data, int mode = 0644) {
    IMGFS_RETURN_IF_ERROR(WriteFile(P(rel), data, mode));
    // chmod after create: the umask must not decide the image's modes.
    if (chmod(P(rel).c_str(), static_cast<mode_t>(mode)) != 0) return Errno("chmod " + rel);
    return Status::Ok();
  }
  Status Symlink(const std::string& target, const std::string& rel) {
    if (symlink(target.c_str(), P(rel).c_str()) != 0) return Errno("symlink " + rel);
    return Status::Ok();
  }
  Status Chown(const std::string& rel, uid_t uid, gid_t gid) {
    if (lchown(P(rel).c_str(), uid, gid) != 0) return Errno("lchown " + rel);
    return Status::Ok();
  }
  Status SetMtime(const std::string& rel, time_t sec, long nsec = 0) {
    timespec times[2] = {{sec, nsec}, {sec, nsec}};
    if (utimensat(AT_FDCWD, P(rel).c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return Errno("utimensat " + rel);
    }
    return Status::Ok();
  }
  Status Xattr(const std::string& rel, const std::string& name, const std::string& value) {
    if (lsetxattr(P(rel).c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
      return Errno("lsetxattr " + name + " on " + rel + " (the test dir needs user xattrs)");
    }
    return Status::Ok();
  }
  Status Node(const std::string& rel, mode_t mode, dev_t dev) {
    if (mknod(P(rel).c_str(), mode, dev) != 0) return Errno("mknod " + rel);
    return Status::Ok();
  }
  Status Remove(const std::string& rel) {
    if (unlink(P(rel).c_str()) != 0) return Errno("unlink " + rel);
    return Status::Ok();
  }
  Status CopyFrom(const std::string& src, const std::string& rel, int mode) {
    IMGFS_ASSIGN_OR_RETURN(std::string data, ReadFile(src));
    return File(rel, data, mode);
  }

 private:
  std::string P(const std::string& rel) const { return root_ + "/" + rel; }
  std::string root_;
};

}  // namespace

std::string HostArchitecture() {
  utsname u{};
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64" || m == "arm64") return "arm64";
  if (m.rfind("armv", 0) == 0) return "arm";
  if (m == "i386" || m == "i686") return "386";
  return m;  // s390x, ppc64le, riscv64 are spelled the same
}

Status BuildBusyboxImage(const OciLayout& layout, const std::string& tag, const std::string& work) {
  if (!IsExecutable(kBusybox)) {
    return Status::NotFound(
        "/bin/busybox missing: busybox-static not installed: run scripts/setup");
  }
  IMGFS_RETURN_IF_ERROR(layout.NewImage(tag));
  std::string bundle = work + "/bundle-" + tag;
  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  RootfsWriter w(bundle + "/rootfs");
  IMGFS_RETURN_IF_ERROR(w.Dir("bin"));
  IMGFS_RETURN_IF_ERROR(w.Dir("etc"));
  IMGFS_RETURN_IF_ERROR(w.Dir("tmp", 01777));
  IMGFS_RETURN_IF_ERROR(w.CopyFrom(kBusybox, "bin/busybox", 0755));
  for (const char* applet : {"sh", "ls", "cat", "echo", "sha256sum", "find"}) {
    IMGFS_RETURN_IF_ERROR(w.Symlink("busybox", std::string("bin/") + applet));
  }
  IMGFS_RETURN_IF_ERROR(
      w.File("etc/os-release", "NAME=\"imgfs test busybox\"\nID=imgfs-busybox\nVERSION_ID=1\n"));
  IMGFS_RETURN_IF_ERROR(w.File("README",
                               "This image was built by the imgfs tests with umoci.\n"
                               "It holds a static busybox and a few applet links.\n"));
  IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  IMGFS_RETURN_IF_ERROR(layout.Config(tag, {"--config.entrypoint", "/bin/sh"}));
  RemoveTree(bundle);
  return Status::Ok();
}

Status BuildLayeredImage(const OciLayout& layout, const std::string& tag, const std::string& work,
                         bool link_to_lower) {
  IMGFS_RETURN_IF_ERROR(layout.NewImage(tag));
  std::string bundle = work + "/bundle-" + tag;
  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  {
    // Layer 1.
    RootfsWriter w(bundle + "/rootfs");
    IMGFS_RETURN_IF_ERROR(w.Dir("etc"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/hostname", "layered-image\n"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/empty", ""));
    IMGFS_RETURN_IF_ERROR(w.Dir("etc/replaced"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/replaced/a", "layer 1 a\n"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/replaced/b", "layer 1 b\n"));
    IMGFS_RETURN_IF_ERROR(w.Dir("etc/replaced/sub"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/replaced/sub/c", "layer 1 c\n"));
    IMGFS_RETURN_IF_ERROR(w.Dir("data"));
    IMGFS_RETURN_IF_ERROR(w.File("data/keep", "kept from layer 1\n"));
    IMGFS_RETURN_IF_ERROR(w.Xattr("data/keep", "user.layer", "one"));
    IMGFS_RETURN_IF_ERROR(w.File("data/remove-me", "whited out by layer 2\n"));
    IMGFS_RETURN_IF_ERROR(w.File("data/gone-in-layer3", "deleted by layer 3\n"));
    IMGFS_RETURN_IF_ERROR(w.File("data/name with spaces.txt", "spaces\n"));
    IMGFS_RETURN_IF_ERROR(w.File("data/private", "mode 0600, owner 1000:1000\n", 0600));
    IMGFS_RETURN_IF_ERROR(w.Chown("data/private", 1000, 1000));
    IMGFS_RETURN_IF_ERROR(w.File("data/exec.sh", "#!/bin/sh\nexit 0\n", 0755));
    IMGFS_RETURN_IF_ERROR(w.Dir("secret", 0700));
    IMGFS_RETURN_IF_ERROR(w.File("secret/key", "not really\n", 0400));
    IMGFS_RETURN_IF_ERROR(w.Dir("dev"));
    IMGFS_RETURN_IF_ERROR(w.Node("dev/testnull", S_IFCHR | 0666, makedev(1, 3)));
    IMGFS_RETURN_IF_ERROR(w.Dir("run"));
    IMGFS_RETURN_IF_ERROR(w.Node("run/fifo", S_IFIFO | 0644, 0));
    IMGFS_RETURN_IF_ERROR(w.Dir("usr/share/doc/imgfs"));
    IMGFS_RETURN_IF_ERROR(w.File("usr/share/doc/imgfs/notes.txt", "old file\n"));
    IMGFS_RETURN_IF_ERROR(w.SetMtime("usr/share/doc/imgfs/notes.txt", 981173106, 500));
    IMGFS_RETURN_IF_ERROR(w.SetMtime("usr/share/doc/imgfs", 981173106));
    IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  }
  RemoveTree(bundle);
  {
    // Layer 2: what umoci cannot write (opaque whiteouts) and tar corner cases.
    std::string tar = work + "/layer2-" + tag + ".tar";
    std::vector<std::string> make = {
        "/usr/bin/python3", std::string(IMGFS_SOURCE_DIR) + "/tests/support/make_layer2.py", tar};
    if (!link_to_lower) make.push_back("--no-link-to-lower");
    IMGFS_RETURN_IF_ERROR(RunOk(make));
    IMGFS_RETURN_IF_ERROR(layout.AddRawLayer(tag, tar));
    unlink(tar.c_str());
  }
  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  {
    // Layer 3.
    RootfsWriter w(bundle + "/rootfs");
    IMGFS_RETURN_IF_ERROR(w.File("etc/hostname", "layered-image, layer 3\n"));
    IMGFS_RETURN_IF_ERROR(w.Remove("data/gone-in-layer3"));
    IMGFS_RETURN_IF_ERROR(w.File("etc/replaced/added-in-layer3", "layer 3 adds to it\n"));
    IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  }
  RemoveTree(bundle);
  return Status::Ok();
}

Status BuildPlatformImage(const OciLayout& layout, const std::string& tag, const std::string& arch,
                          const std::string& work) {
  IMGFS_RETURN_IF_ERROR(layout.NewImage(tag));
  std::string bundle = work + "/bundle-" + tag;
  IMGFS_RETURN_IF_ERROR(layout.Unpack(tag, bundle));
  RootfsWriter w(bundle + "/rootfs");
  IMGFS_RETURN_IF_ERROR(w.Dir("etc"));
  IMGFS_RETURN_IF_ERROR(w.File("etc/arch", arch + "\n"));
  IMGFS_RETURN_IF_ERROR(w.File("etc/os-release", "NAME=\"imgfs test " + arch + "\"\n"));
  IMGFS_RETURN_IF_ERROR(layout.Repack(tag, bundle));
  IMGFS_RETURN_IF_ERROR(layout.Config(tag, {"--os", "linux", "--architecture", arch}));
  RemoveTree(bundle);
  return Status::Ok();
}

Result<std::unique_ptr<TestImages>> TestImages::Build(const std::vector<std::string>& names) {
  std::unique_ptr<TestImages> images(new TestImages());
  std::string work = images->dir_.MakeDir("work");
  IMGFS_ASSIGN_OR_RETURN(OciLayout layout, OciLayout::Init(images->dir_.Sub("oci")));
  images->layout_ = std::make_unique<OciLayout>(layout);
  for (const auto& name : names) {
    if (name == "busybox") {
      IMGFS_RETURN_IF_ERROR(BuildBusyboxImage(layout, name, work));
    } else if (name == "layered") {
      IMGFS_RETURN_IF_ERROR(BuildLayeredImage(layout, name, work));
    } else if (name == "layered-podman") {
      IMGFS_RETURN_IF_ERROR(BuildLayeredImage(layout, name, work, /*link_to_lower=*/false));
    } else if (name == "amd64" || name == "arm64") {
      IMGFS_RETURN_IF_ERROR(BuildPlatformImage(layout, name, name, work));
    } else {
      return Status::InvalidArgument("unknown test image " + name);
    }
    std::string unpacked = images->dir_.Sub("ref-" + name);
    IMGFS_RETURN_IF_ERROR(layout.Unpack(name, unpacked));
    images->reference_roots_[name] = unpacked + "/rootfs";
  }
  return images;
}

std::string TestImages::ReferenceRoot(const std::string& name) const {
  auto it = reference_roots_.find(name);
  return it == reference_roots_.end() ? "/nonexistent-reference-" + name : it->second;
}

Result<PushedImage> TestImages::Push(const std::string& name, const std::string& host,
                                     const std::string& repo, const std::string& tag,
                                     const PushOptions& options) const {
  PushedImage p{host, repo, tag, ""};
  IMGFS_ASSIGN_OR_RETURN(p.digest, PushImage(*layout_, name, p.ByTag(), options));
  return p;
}

Result<PushedImage> TestImages::PushMultiPlatform(const std::string& host, const std::string& repo,
                                                  const std::string& tag) const {
  std::vector<IndexEntry> entries;
  for (const char* arch : {"amd64", "arm64"}) {
    IMGFS_ASSIGN_OR_RETURN(PushedImage one,
                           Push(arch, host, repo, tag + "-only-" + arch, PushOptions{}));
    entries.push_back({one.digest, "linux", arch, ""});
  }
  PushedImage p{host, repo, tag, ""};
  IMGFS_ASSIGN_OR_RETURN(p.digest, PutIndex(host, repo, tag, entries));
  return p;
}

Result<std::string> HttpGet(const std::string& url, const std::vector<std::string>& headers,
                            const std::string& creds) {
  TempDir tmp("http");
  std::string body_path = tmp.Sub("body");
  std::vector<std::string> args = {"-o", body_path, "-w", "%{http_code}"};
  for (const auto& h : headers) {
    args.push_back("-H");
    args.push_back(h);
  }
  if (!creds.empty()) {
    args.push_back("-u");
    args.push_back(creds);
  }
  args.push_back(url);
  IMGFS_ASSIGN_OR_RETURN(std::string code, RunCurl(args, 60));
  auto body = ReadFile(body_path);
  std::string text = body.ok() ? *body : "";
  if (code.empty() || code[0] != '2') {
    return Status::Unavailable("GET " + url + " answered " + code + ": " + text);
  }
  return text;
}

Result<std::string> PutIndex(const std::string& host, const std::string& repo,
                             const std::string& tag, const std::vector<IndexEntry>& entries) {
  nlohmann::json manifests = nlohmann::json::array();
  for (const auto& e : entries) {
    IMGFS_ASSIGN_OR_RETURN(std::string body,
                           HttpGet("http://" + host + "/v2/" + repo + "/manifests/" + e.digest,
                                   {"Accept: application/vnd.oci.image.manifest.v1+json, "
                                    "application/vnd.docker.distribution.manifest.v2+json"}));
    std::string media_type = "application/vnd.oci.image.manifest.v1+json";
    try {
      auto j = nlohmann::json::parse(body);
      if (j.contains("mediaType")) media_type = j["mediaType"].get<std::string>();
    } catch (const nlohmann::json::exception& ex) {
      return Status::Corrupt("manifest " + e.digest + " is not JSON: " + ex.what());
    }
    if (Sha256Digest(body) != e.digest) {
      return Status::DigestMismatch("registry served " + e.digest + " with other bytes");
    }
    nlohmann::json platform = {{"os", e.os}, {"architecture", e.architecture}};
    if (!e.variant.empty()) platform["variant"] = e.variant;
    manifests.push_back({{"mediaType", media_type},
                         {"digest", e.digest},
                         {"size", body.size()},
                         {"platform", platform}});
  }
  nlohmann::json index = {{"schemaVersion", 2},
                          {"mediaType", "application/vnd.oci.image.index.v1+json"},
                          {"manifests", manifests}};
  std::string body = index.dump();
  TempDir tmp("index");
  IMGFS_RETURN_IF_ERROR(WriteFile(tmp.Sub("index.json"), body));
  IMGFS_ASSIGN_OR_RETURN(
      std::string code,
      RunCurl({"-o", tmp.Sub("answer"), "-w", "%{http_code}", "-X", "PUT", "-H",
               "Content-Type: application/vnd.oci.image.index.v1+json", "--data-binary",
               "@" + tmp.Sub("index.json"), "http://" + host + "/v2/" + repo + "/manifests/" + tag},
              60));
  if (code != "201") {
    auto answer = ReadFile(tmp.Sub("answer"));
    return Status::Unavailable("PUT index " + repo + ":" + tag + " answered " + code + ": " +
                               (answer.ok() ? *answer : ""));
  }
  return Sha256Digest(body);
}

}  // namespace imgfs::test
