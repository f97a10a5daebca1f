#include "tests/support/files.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "base/digest.h"

namespace imgfs::test {

TempDir::TempDir(std::string_view prefix) {
  std::string tmpl = "/var/tmp/imgfs-test-" + std::string(prefix) + "-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) {
    fprintf(stderr, "cannot create temporary directory %s: %s\n", tmpl.c_str(), strerror(errno));
    abort();
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (getenv("IMGFS_TEST_KEEP") != nullptr) {
    fprintf(stderr, "IMGFS_TEST_KEEP: keeping %s\n", path_.c_str());
    return;
  }
  RemoveTree(path_);
}

std::string TempDir::Sub(std::string_view name) const { return path_ + "/" + std::string(name); }

std::string TempDir::MakeDir(std::string_view name) const {
  std::string p = Sub(name);
  Status s = MakeDirs(p);
  if (!s.ok()) {
    fprintf(stderr, "%s\n", s.ToString().c_str());
    abort();
  }
  return p;
}

namespace {
int RemoveOne(const char* path, const struct stat*, int type, struct FTW*) {
  if (type == FTW_DP) {
    rmdir(path);
  } else {
    unlink(path);
  }
  return 0;  // keep going: remove as much as possible
}
}  // namespace

void RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    unlink(path.c_str());
    return;
  }
  nftw(path.c_str(), RemoveOne, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

Status MakeDirs(const std::string& path, int mode) {
  if (path.empty()) return Status::InvalidArgument("empty path");
  for (size_t pos = 1;; ++pos) {
    pos = path.find('/', pos);
    std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return Status::IoError("mkdir " + prefix + ": " + strerror(errno));
    }
    if (pos == std::string::npos) break;
  }
  return Status::Ok();
}

namespace {

// Calls `piece` with the file's bytes in order, a buffer at a time.
Status ReadPieces(const std::string& path, const std::function<void(std::string_view)>& piece) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IoError("open " + path + ": " + strerror(errno));
  std::string buf(1 << 17, '\0');
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Status::IoError("read " + path + ": " + strerror(errno));
      close(fd);
      return s;
    }
    if (n == 0) break;
    piece(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  close(fd);
  return Status::Ok();
}

}  // namespace

Result<std::string> ReadFile(const std::string& path) {
  std::string data;
  IMGFS_RETURN_IF_ERROR(ReadPieces(path, [&](std::string_view p) { data.append(p); }));
  return data;
}

Status WriteFile(const std::string& path, std::string_view data, int mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::IoError("create " + path + ": " + strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Status s = Status::IoError("write " + path + ": " + strerror(errno));
      close(fd);
      return s;
    }
    done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return Status::IoError("close " + path + ": " + strerror(errno));
  return Status::Ok();
}

Result<std::string> FileSha256(const std::string& path) {
  Sha256 hash;
  IMGFS_RETURN_IF_ERROR(ReadPieces(path, [&](std::string_view p) { hash.Update(p); }));
  return hash.FinishDigest();
}

Result<int> FreeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IoError(std::string("socket: ") + strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Status s = Status::IoError(std::string("bind 127.0.0.1:0: ") + strerror(errno));
    close(fd);
    return s;
  }
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

bool PortAcceptsConnections(int port) { return PortAcceptsConnections("127.0.0.1", port); }

bool PortAcceptsConnections(const std::string& ipv4, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, ipv4.c_str(), &addr.sin_addr) != 1) return false;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

bool IsMountPoint(const std::string& path) {
  char resolved[PATH_MAX];
  std::string want = realpath(path.c_str(), resolved) != nullptr ? resolved : path;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // Fields: id parent major:minor root mount-point ...; the mount point escapes spaces as \040.
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point == want) return true;
  }
  return false;
}

}  // namespace imgfs::test
