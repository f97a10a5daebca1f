#include <sys/stat.h>

#include <cerrno>
#include <memory>

#include "base/log.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/daemon.h"
#include "cli/image.h"
#include "cli/shared_index.h"
#include "cli/stats.h"
#include "fs/fuse/fuse_fs.h"
#include "fs/tree/prefetcher.h"

namespace imgfs::cli {
namespace {

Status CheckMountpoint(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::InvalidArgument("mount point " + path +
                                     " is a stale mount whose process has gone: run imgfs umount " +
                                     path + " first");
    }
    return Status::InvalidArgument("mount point " + path +
                                   " does not exist: create it first (mkdir -p)");
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("mount point " + path + " is not a directory");
  }
  return Status::Ok();
}

// Resolves, indexes and serves the mount. `ready` is called once the kernel mount exists.
Status MountAndServe(const MountOptions& options, const Target& target,
                     fs::Prefetcher::Mode prefetch_mode, const std::function<void()>& ready) {
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<OpenedImage> opened, OpenImage(target, options.common));
  OpenedImage& image = *opened;
  if (options.push_index) {
    // The first pass is over: share its indexes before the mount is ready. A failure to push
    // does not fail the mount.
    Result<PushedIndexes> pushed = PushSharedIndexes(*image.client, image.image, *image.cache);
    if (pushed.ok()) {
      IMGFS_LOG(kInfo, "pushed the indexes of " << pushed->layers << " layer(s) as "
                                                << pushed->artifact.digest);
    } else {
      IMGFS_LOG(kWarning, "--push-index: " << pushed.status().ToString());
    }
  }
  fs::FuseOptions fuse;
  fuse.mountpoint = options.mountpoint;
  fuse.fuse_args = options.fuse_options;
  fuse.debug = options.debug;
  fuse.fsname = "imgfs:" + target.ref.String();
  fuse.stats = [&] {
    return MountStatsJson(image.image, image.layers, image.cache.get(), *image.source,
                          *image.reader)
        .dump();
  };
  // Made before the mount and started once it is ready: prefetching must not delay the
  // moment the user can read, and it stops (joins) before the cache closes.
  fs::Prefetcher prefetcher(image.image_layers, image.cache.get(), image.source.get(),
                            prefetch_mode);
  return fs::ServeFuse(*image.tree, *image.reader, fuse, [&] {
    ready();
    prefetcher.Start();
  });
}

}  // namespace

int RunMount(const MountOptions& options) {
  auto target = ParseTarget(options.image, options.common);
  if (!target.ok()) return Fail(target.status());
  if (Status s = CheckMountpoint(options.mountpoint); !s.ok()) return Fail(s);
  auto prefetch = fs::Prefetcher::ParseMode(options.prefetch);
  if (!prefetch.ok()) return Fail(prefetch.status());
  std::string log_file = options.log_file.empty() ? CacheRoot(options.common) + "/imgfs.log"
                                                  : options.log_file;
  return RunServing(options.foreground, "mount of " + options.image, log_file,
                    [&](const std::function<void()>& ready) {
                      return MountAndServe(options, *target, *prefetch, ready);
                    });
}

}  // namespace imgfs::cli
