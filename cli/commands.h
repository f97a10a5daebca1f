// The imgfs subcommands, one file each (cli/<command>.cc; what they share is in cli/common.h).
// Each returns the process exit status and prints what went wrong, with what to do about it,
// on stderr ("imgfs: <message>").
#pragma once

#include <string>
#include <vector>

namespace imgfs::cli {

struct CommonOptions {
  std::string cache_dir;  // "" = cache::Cache::DefaultRoot()
  std::string platform;   // "" = the host's
  std::string pull = "missing";
};

struct MountOptions {
  CommonOptions common;
  std::string image;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  std::vector<std::string> fuse_options;  // -o values, passed to FUSE
  std::string log_file;                   // "" = <cache>/imgfs.log for a background mount
  std::string prefetch = "landmark";      // landmark, all or none (fs::Prefetcher)
};

struct InspectOptions {
  CommonOptions common;
  std::string image;
  std::string format = "text";  // or "json"
};

int RunMount(const MountOptions& options);
int RunUmount(const std::string& mountpoint);
int RunInspect(const InspectOptions& options);
// Prints what the mount at `mountpoint` fetched and holds, per layer; format text or json.
int RunStats(const std::string& mountpoint, const std::string& format);

}  // namespace imgfs::cli
