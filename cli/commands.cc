#include "cli/commands.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sys/xattr.h>
#include <thread>

#include "base/log.h"
#include "cache/cache.h"
#include "cli/image_resolver.h"
#include "cli/registry_blob_source.h"
#include "fs/fuse/fuse_fs.h"
#include "fs/layer/layer_builder.h"
#include "fs/tree/content_reader.h"
#include "fs/tree/prefetcher.h"
#include "fs/tree/tree.h"
#include "registry/client.h"

namespace imgfs::cli {
namespace {

constexpr int kMaxParallelLayers = 4;

int Fail(const Status& status) {
  std::cerr << "imgfs: " << status.message() << "\n";
  return 1;
}

std::string CacheRoot(const CommonOptions& common) {
  return common.cache_dir.empty() ? cache::Cache::DefaultRoot() : common.cache_dir;
}

struct Target {
  registry::Reference ref;
  registry::Platform platform;
  bool platform_given = false;  // --platform, rather than this host's
  PullPolicy policy = PullPolicy::kMissing;
};

// A single-platform image for another platform: an error when --platform asked for it, as
// docker's "does not match the specified platform"; a warning when only the host's differs
// (one may well look inside an arm64 image on an amd64 machine).
Status CheckPlatform(const registry::ResolvedImage& image, const Target& target) {
  if (image.index) return Status::Ok();  // chosen from the index already
  if (registry::PlatformMatch(target.platform, image.platform) > 0) return Status::Ok();
  std::string text = image.ref.String() + " is an image for " + image.platform.String() +
                     " only, not " + target.platform.String();
  if (target.platform_given) return Status::NotFound(text);
  IMGFS_LOG(kWarning, text << " (this host's platform); its programs may not run here");
  return Status::Ok();
}

// As docker: Docker Hub pulls go through the mirrors of docker's daemon.json first.
registry::ClientOptions DefaultClientOptions() {
  registry::ClientOptions options;
  options.mirrors = registry::DockerDaemonMirrors();
  return options;
}

// Everything that can be checked without network or cache, so that a mistake is reported
// before a mount forks.
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

fs::LayerDescriptor ToLayerDescriptor(const registry::Descriptor& d) {
  fs::LayerDescriptor out;
  out.media_type = d.media_type;
  out.digest = d.digest;
  out.size = d.size;
  out.annotations = d.annotations;
  return out;
}

// Indexes the image's layers, several at once, in manifest order (bottom first).
Result<std::vector<std::shared_ptr<const fs::LayerIndex>>> IndexLayers(
    const registry::ImageManifest& manifest, cache::Cache* cache, cache::BlobSource* source) {
  const size_t n = manifest.layers.size();
  std::vector<std::shared_ptr<const fs::LayerIndex>> layers(n);
  std::vector<Status> errors(n);
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) {
      auto index = fs::GetOrBuildLayerIndex(ToLayerDescriptor(manifest.layers[i]), cache, source);
      if (index.ok()) {
        layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
      } else {
        errors[i] = index.status().WithContext("layer " + manifest.layers[i].digest);
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min<size_t>(n, kMaxParallelLayers); ++t) threads.emplace_back(worker);
  for (auto& th : threads) th.join();
  for (const Status& s : errors) {
    if (!s.ok()) return s;
  }
  return layers;
}

// What `imgfs stats` shows: per layer, what this mount fetched and what the cache holds.
nlohmann::json MountStatsJson(const registry::ResolvedImage& image,
                              const std::vector<std::shared_ptr<const fs::LayerIndex>>& layers,
                              cache::Cache* cache, const MeteredBlobSource& source,
                              const fs::ContentReader& reader) {
  nlohmann::json out;
  out["reference"] = image.ref.String();
  out["digest"] = image.manifest.digest;
  out["layers"] = nlohmann::json::array();
  std::vector<fs::ContentReader::LayerStats> reads = reader.stats();
  for (size_t i = 0; i < layers.size(); ++i) {
    const fs::LayerIndex& layer = *layers[i];
    uint64_t units_present = 0, unit_bytes = 0, unit_bytes_present = 0;
    for (const fs::Unit& unit : layer.units) {
      cache::UnitRef ref{layer.blob_digest, unit.coff, unit.clen, unit.sha256};
      unit_bytes += unit.clen;
      if (cache->HasUnit(ref)) {
        ++units_present;
        unit_bytes_present += unit.clen;
      }
    }
    MeteredBlobSource::Counts fetched = source.Get(layer.blob_digest);
    nlohmann::json l = {
        {"digest", layer.blob_digest},
        {"format", layer.format},
        {"size", layer.blob_size},
        {"fetched_bytes", fetched.bytes},
        {"fetch_requests", fetched.requests},
        {"units_present", units_present},
        {"units_total", layer.units.size()},
        {"percent", unit_bytes == 0 ? 100.0 : 100.0 * unit_bytes_present / unit_bytes},
    };
    if (i < reads.size()) {
      l["unit_decodes"] = reads[i].unit_decodes;
      l["lru_hits"] = reads[i].lru_hits;
      l["read_failures"] = reads[i].failures;
      l["bytes_read"] = reads[i].bytes_read;
      l["readahead_units"] = reads[i].readahead_units;
    }
    out["layers"].push_back(l);
  }
  return out;
}

Status CheckMountpoint(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOTCONN) {
      return Status::InvalidArgument("mount point " + path +
                                     " is a stale mount whose process has gone: run imgfs umount " +
                                     path + " first");
    }
    return Status::InvalidArgument("mount point " + path + " does not exist: create it first (mkdir -p)");
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("mount point " + path + " is not a directory");
  }
  return Status::Ok();
}

void WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

// Resolves, indexes and serves the mount. `ready` is called once the kernel mount exists.
Status MountAndServe(const MountOptions& options, const Target& target,
                     fs::Prefetcher::Mode prefetch_mode, const std::function<void()>& ready) {
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::Cache> cache,
                         cache::Cache::Open(CacheRoot(options.common)));
  registry::Client client(DefaultClientOptions());
  IMGFS_ASSIGN_OR_RETURN(registry::ResolvedImage image, ResolveImage(target.ref, target.platform,
                                                         target.policy, &client, cache.get()));
  IMGFS_RETURN_IF_ERROR(CheckPlatform(image, target));
  RegistryBlobSource registry_source(&client, target.ref);
  MeteredBlobSource source(&registry_source);
  IMGFS_ASSIGN_OR_RETURN(auto layers, IndexLayers(image.parsed, cache.get(), &source));
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<fs::Tree> tree, fs::Tree::Build(layers));
  fs::ContentReader reader(layers, cache.get(), &source);
  fs::FuseOptions fuse;
  fuse.mountpoint = options.mountpoint;
  fuse.fuse_args = options.fuse_options;
  fuse.debug = options.debug;
  fuse.fsname = "imgfs:" + target.ref.String();
  fuse.stats = [&] {
    return MountStatsJson(image, layers, cache.get(), source, reader).dump();
  };
  // Made before the mount and started once it is ready: prefetching must not delay the
  // moment the user can read, and it stops (joins) before the cache closes.
  fs::Prefetcher prefetcher(layers, cache.get(), &source, prefetch_mode);
  return fs::ServeFuse(*tree, reader, fuse, [&] {
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
  if (options.foreground) {
    Status s = MountAndServe(options, *target, *prefetch, [] {});
    return s.ok() ? 0 : Fail(s);
  }

  // Fork before anything opens LMDB, starts threads or initialises libcurl: none of them
  // survive fork(). The parent waits on a pipe until the child's mount is ready or failed.
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    return Fail(Status::IoError(std::string("pipe: ") + std::strerror(errno)));
  }
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Status::IoError(std::string("fork: ") + std::strerror(errno)));
  if (pid > 0) {
    ::close(pipefd[1]);
    std::string message;
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(pipefd[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      message.append(buf, static_cast<size_t>(n));
    }
    ::close(pipefd[0]);
    if (message == "ok") return 0;
    int wstatus = 0;
    ::waitpid(pid, &wstatus, 0);
    if (message.empty()) message = "the mount process ended before the mount was ready";
    std::cerr << "imgfs: " << message << "\n";
    return 1;
  }

  ::close(pipefd[0]);
  ::setsid();
  int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
  }
  std::string log_file = options.log_file.empty()
                             ? CacheRoot(options.common) + "/imgfs.log"
                             : options.log_file;
  int ready_fd = pipefd[1];
  Status s = MountAndServe(options, *target, *prefetch, [&] {
    WriteAll(ready_fd, "ok");
    ::close(ready_fd);
    ready_fd = -1;
    // From now on nobody reads our stderr: log to the file.
    int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd >= 0) {
      ::dup2(log_fd, 2);
      ::close(log_fd);
    } else if (devnull >= 0) {
      ::dup2(devnull, 2);
    }
  });
  if (ready_fd >= 0) {
    WriteAll(ready_fd, s.ok() ? std::string("the mount ended before it was ready")
                              : s.message());
    ::close(ready_fd);
    ::_exit(1);
  }
  if (!s.ok()) IMGFS_LOG(kError, "mount of " << options.image << " ended: " << s.message());
  ::_exit(s.ok() ? 0 : 1);
}

int RunUmount(const std::string& mountpoint) {
  // fusermount3 works for root and for the user who mounted; it also refuses paths that are
  // not FUSE mounts, with a clear message of its own.
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Status::IoError(std::string("fork: ") + std::strerror(errno)));
  if (pid == 0) {
    ::execlp("fusermount3", "fusermount3", "-u", "--", mountpoint.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return 0;
  if (::geteuid() == 0 && ::umount2(mountpoint.c_str(), 0) == 0) return 0;
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 127) {
    return Fail(Status::Unavailable("fusermount3 not found: install fuse3 (scripts/setup)"));
  }
  return Fail(Status::InvalidArgument("could not unmount " + mountpoint));
}

int RunInspect(const InspectOptions& options) {
  auto target = ParseTarget(options.image, options.common);
  if (!target.ok()) return Fail(target.status());
  if (options.format != "text" && options.format != "json") {
    return Fail(Status::InvalidArgument("--format must be text or json"));
  }
  auto cache = cache::Cache::Open(CacheRoot(options.common));
  if (!cache.ok()) return Fail(cache.status());
  registry::Client client(DefaultClientOptions());
  auto image = ResolveImage(target->ref, target->platform, target->policy, &client, cache->get());
  if (!image.ok()) return Fail(image.status());
  if (Status s = CheckPlatform(*image, *target); !s.ok()) return Fail(s);

  nlohmann::json config = nlohmann::json::parse(image->config, nullptr, false);
  if (options.format == "json") {
    nlohmann::json out;
    out["reference"] = image->ref.String();
    out["digest"] = image->manifest.digest;
    out["mediaType"] = image->manifest.media_type;
    if (image->index) {
      out["index"] = {{"digest", image->index->digest}, {"mediaType", image->index->media_type}};
    }
    out["platform"] = image->platform.String();
    out["layers"] = nlohmann::json::array();
    for (const auto& layer : image->parsed.layers) {
      nlohmann::json l = {
          {"mediaType", layer.media_type}, {"size", layer.size}, {"digest", layer.digest}};
      if (!layer.annotations.empty()) l["annotations"] = layer.annotations;
      out["layers"].push_back(l);
    }
    out["config"] = config.is_discarded() ? nlohmann::json(image->config) : config;
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  uint64_t total = 0;
  for (const auto& layer : image->parsed.layers) total += layer.size;
  std::cout << "Reference: " << image->ref.String() << "\n";
  if (image->index) std::cout << "Index:     " << image->index->digest << "\n";
  std::cout << "Digest:    " << image->manifest.digest << "\n"
            << "MediaType: " << image->manifest.media_type << "\n"
            << "Platform:  " << image->platform.String() << "\n"
            << "Layers:    " << image->parsed.layers.size() << " (" << total
            << " bytes compressed)\n";
  for (const auto& layer : image->parsed.layers) {
    std::cout << "  " << layer.digest << "  " << layer.size << "  " << layer.media_type << "\n";
  }
  if (!config.is_discarded() && config.contains("config") && config["config"].is_object()) {
    std::cout << "Config:\n" << config["config"].dump(2) << "\n";
  }
  return 0;
}

int RunStats(const std::string& mountpoint, const std::string& format) {
  std::string value(1 << 16, '\0');
  ssize_t n;
  for (;;) {
    n = ::getxattr(mountpoint.c_str(), fs::kStatsXattr, value.data(), value.size());
    if (n >= 0 || errno != ERANGE) break;
    value.resize(value.size() * 4);
  }
  if (n < 0) {
    return Fail(Status::InvalidArgument(mountpoint + " is not an imgfs mount (" +
                                        std::strerror(errno) + ")"));
  }
  value.resize(static_cast<size_t>(n));
  nlohmann::json stats = nlohmann::json::parse(value, nullptr, false);
  if (stats.is_discarded()) return Fail(Status::Corrupt("the mount answered unreadable stats"));
  if (format == "json") {
    std::cout << stats.dump(2) << "\n";
    return 0;
  }
  std::cout << "Reference: " << stats.value("reference", "") << "\n"
            << "Digest:    " << stats.value("digest", "") << "\n";
  std::printf("%-19s  %-12s  %12s  %12s  %15s  %7s\n", "LAYER", "FORMAT", "SIZE", "FETCHED",
              "UNITS", "PRESENT");
  for (const auto& l : stats["layers"]) {
    std::string digest = l.value("digest", "");
    std::string units = std::to_string(l.value("units_present", 0)) + "/" +
                        std::to_string(l.value("units_total", 0));
    std::printf("%-19s  %-12s  %12llu  %12llu  %15s  %6.1f%%\n",
                digest.substr(0, std::min<size_t>(digest.size(), 19)).c_str(),
                l.value("format", "").c_str(),
                static_cast<unsigned long long>(l.value("size", 0ull)),
                static_cast<unsigned long long>(l.value("fetched_bytes", 0ull)), units.c_str(),
                l.value("percent", 0.0));
  }
  return 0;
}

}  // namespace imgfs::cli
