#include "fs/fuse/fuse_session.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/log.h"

namespace imgfs::fs {
namespace {

// The mount's "major:minor" from /proc/self/mountinfo (the last mount on `mountpoint`), or ""
// when not found. Reading the table instead of stat(2)ing the mountpoint matters: the loop
// is not serving yet, and a stat would wait for it forever.
std::string MountDevice(const std::string& mountpoint) {
  char* real = realpath(mountpoint.c_str(), nullptr);
  if (!real) return "";
  std::string want(real);
  free(real);
  // mountinfo escapes space, tab, newline and backslash in paths as \ooo.
  std::string escaped;
  for (char c : want) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\\') {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\%03o", static_cast<unsigned char>(c));
      escaped += buf;
    } else {
      escaped.push_back(c);
    }
  }
  FILE* f = fopen("/proc/self/mountinfo", "re");
  if (!f) return "";
  std::string device;
  char* line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    // "<id> <parent> <major:minor> <root> <mount point> ..."
    char dev[64], root[4096], point[4096];
    if (sscanf(line, "%*d %*d %63s %4095s %4095s", dev, root, point) == 3 && escaped == point) {
      device = dev;
    }
  }
  free(line);
  fclose(f);
  return device;
}

// The kernel starts a FUSE mount with 128 KiB of readahead. Image files are read whole and
// served from MiB-sized units, so a larger window turns a cold sequential read into many
// parallel requests (kMountReadaheadKb). The window only grows as a read stays sequential, so
// random reads do not fetch more. Best effort: it needs root (sysfs), and the mount works
// without it.
void GrowReadahead(const std::string& mountpoint) {
  const std::string kb = std::to_string(kMountReadaheadKb);
  std::string device = MountDevice(mountpoint);
  if (device.empty()) return;
  std::string path = "/sys/class/bdi/" + device + "/read_ahead_kb";
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && write(fd, kb.data(), kb.size()) > 0;
  if (fd >= 0) close(fd);
  if (!ok) IMGFS_LOG(kDebug, "cannot set " << path << ": " << std::strerror(errno));
}

struct ArgsDeleter {
  void operator()(fuse_args* args) const {
    fuse_opt_free_args(args);
    delete args;
  }
};

}  // namespace

std::string EscapeOption(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

Status RunFuseSession(const fuse_lowlevel_ops& ops, void* userdata, const FuseOptions& options,
                      const std::string& forced_options, const std::function<void()>& on_ready,
                      const fuse_custom_io* io) {
  if (options.mountpoint.empty()) return Status::InvalidArgument("no mountpoint given");
  struct stat st;
  if (stat(options.mountpoint.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::InvalidArgument("mountpoint " + options.mountpoint +
                                     " holds a stale FUSE mount whose server is gone: run "
                                     "`imgfs umount " +
                                     options.mountpoint + "` first");
    }
    return Status::InvalidArgument("mountpoint " + options.mountpoint + ": " +
                                   std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("mountpoint " + options.mountpoint + " is not a directory");
  }

  std::string mount_opts = "default_permissions,subtype=imgfs,fsname=" +
                           EscapeOption(options.fsname.empty() ? "imgfs" : options.fsname);
  for (const std::string& o : options.fuse_args) {
    if (!o.empty()) mount_opts += "," + o;  // the user's own -o list: taken as written
  }
  mount_opts += forced_options;  // last, so that no user option can override them
  std::vector<std::string> argv_strings = {"imgfs", "-o", mount_opts};
  if (options.debug) argv_strings.push_back("-d");
  std::unique_ptr<fuse_args, ArgsDeleter> args(new fuse_args(FUSE_ARGS_INIT(0, nullptr)));
  for (const std::string& a : argv_strings) {
    if (fuse_opt_add_arg(args.get(), a.c_str()) != 0) return Status::Internal("out of memory");
  }

  fuse_session* se = fuse_session_new(args.get(), &ops, sizeof(ops), userdata);
  if (!se) {
    return Status::InvalidArgument("libfuse rejected the mount options \"" + mount_opts + "\"");
  }
  std::unique_ptr<fuse_session, void (*)(fuse_session*)> session(se, fuse_session_destroy);
  if (fuse_set_signal_handlers(se) != 0) {
    return Status::IoError("cannot install signal handlers for the FUSE loop");
  }
  if (fuse_session_mount(se, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    return Status::IoError("cannot mount FUSE at " + options.mountpoint +
                           " (is /dev/fuse there and usable? see scripts/setup)");
  }
  if (io != nullptr) {
    int rc = fuse_session_custom_io(se, io, fuse_session_fd(se));
    if (rc != 0) IMGFS_LOG(kWarning, "no custom FUSE I/O: " << std::strerror(-rc));
  }
  IMGFS_LOG(kInfo, "mounted " << options.fsname << " at " << options.mountpoint);
  GrowReadahead(options.mountpoint);
  if (on_ready) on_ready();

  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 16);
  int rc = fuse_session_loop_mt(se, config);
  fuse_loop_cfg_destroy(config);

  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  // rc > 0 is the signal that ended the loop: an ordinary stop.
  if (rc < 0) {
    return Status::IoError("FUSE loop at " + options.mountpoint + " failed: " + std::strerror(-rc));
  }
  return Status::Ok();
}

}  // namespace imgfs::fs
