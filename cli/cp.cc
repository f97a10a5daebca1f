#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/image.h"

namespace imgfs::cli {
namespace {

Status Errno(const std::string& what, const std::string& path) {
  return Status::IoError(what + " " + path + ": " + std::strerror(errno));
}

Status SetTimes(const std::string& path, const fs::Tree::Attr& attr) {
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = attr.mtime_sec;
  times[0].tv_nsec = times[1].tv_nsec = attr.mtime_nsec;
  if (::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("cannot set the times of", path);
  }
  return Status::Ok();
}

Status CopyFile(OpenedImage& image, const fs::Tree::Attr& attr, const std::string& to) {
  int fd = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("cannot create", to);
  Status s = ReadWholeFile(image, attr.ino, [&](std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::write(fd, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Errno("cannot write", to);
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  });
  if (s.ok() && ::fchmod(fd, attr.mode & 07777) != 0) s = Errno("cannot chmod", to);
  if (::close(fd) != 0 && s.ok()) s = Errno("cannot write", to);
  return s;
}

// One entry of the image at host path `to`. Directories are created here and filled by the
// caller; their times are set by the caller once they are full.
Status CopyEntry(OpenedImage& image, const fs::Tree::Attr& attr, const std::string& to) {
  if (S_ISDIR(attr.mode)) {
    if (::mkdir(to.c_str(), 0700) != 0 && errno != EEXIST) return Errno("cannot create", to);
    return Status::Ok();  // its mode once it is full: it may lack the owner's write bit
  }
  if (S_ISREG(attr.mode)) {
    IMGFS_RETURN_IF_ERROR(CopyFile(image, attr, to));
  } else if (S_ISLNK(attr.mode)) {
    IMGFS_ASSIGN_OR_RETURN(std::string target, image.tree->ReadLink(attr.ino));
    ::unlink(to.c_str());
    if (::symlink(target.c_str(), to.c_str()) != 0) return Errno("cannot create", to);
  } else {
    IMGFS_LOG(kWarning, "not copied (a device, fifo or socket): " << to);
    return Status::Ok();
  }
  return SetTimes(to, attr);
}

}  // namespace

int RunCp(const FilesOptions& options) {
  // IMAGE:/PATH; no reference contains ":/" (a port is followed by digits).
  size_t split = options.image.find(":/");
  if (split == std::string::npos) {
    return Fail(Status::InvalidArgument("the source must be IMAGE:/PATH, not " + options.image));
  }
  const std::string image_ref = options.image.substr(0, split);
  const std::string path = options.image.substr(split + 1);
  auto target = ParseTarget(image_ref, options.common);
  if (!target.ok()) return Fail(target.status());
  auto opened = OpenImage(*target, options.common);
  if (!opened.ok()) return Fail(opened.status());
  OpenedImage& image = **opened;
  auto ino = ResolvePath(*image.tree, path, /*follow_last=*/true);
  if (!ino.ok()) return Fail(ino.status());
  auto attr = image.tree->GetAttr(*ino);
  if (!attr.ok()) return Fail(attr.status());

  // Into an existing directory as its basename, else as DEST itself (cp's rule).
  std::string dest = options.dest;
  struct stat st;
  if (::stat(dest.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::string trimmed = path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    std::string base = trimmed.substr(trimmed.rfind('/') + 1);
    if (!base.empty()) dest += "/" + base;
  }
  // Iterative: a stack of what is still to copy; directories' modes and times are set last,
  // deepest first, once nothing more is written into them.
  std::vector<std::pair<fs::Tree::Attr, std::string>> todo = {{*attr, dest}};
  std::vector<std::pair<fs::Tree::Attr, std::string>> dirs;
  while (!todo.empty()) {
    // Named members rather than a structured binding: clang 14 (the -Wthread-safety build)
    // cannot capture a binding in the lambda below.
    std::pair<fs::Tree::Attr, std::string> next = std::move(todo.back());
    todo.pop_back();
    const fs::Tree::Attr& a = next.first;
    const std::string& to = next.second;
    if (Status s = CopyEntry(image, a, to); !s.ok()) return Fail(s);
    if (!S_ISDIR(a.mode)) continue;
    dirs.emplace_back(a, to);
    Status s = image.tree->ReadDir(a.ino, 0,
                                   [&](std::string_view name, const fs::Tree::Attr& c, uint64_t) {
                                     if (name != "." && name != "..")
                                       todo.emplace_back(c, to + "/" + std::string(name));
                                     return true;
                                   });
    if (!s.ok()) return Fail(s);
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
    if (::chmod(it->second.c_str(), it->first.mode & 07777) != 0) {
      return Fail(Errno("cannot chmod", it->second));
    }
    if (Status s = SetTimes(it->second, it->first); !s.ok()) return Fail(s);
  }
  return 0;
}

}  // namespace imgfs::cli
