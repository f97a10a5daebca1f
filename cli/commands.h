// The imgfs subcommands, one file each (cli/<command>.cc; what they share is in cli/common.h).
// Each returns the process exit status and prints what went wrong, with what to do about it,
// on stderr ("imgfs: <message>").
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace imgfs::cli {

// The flags every command shares. main fills them from the command line, then
// ResolveConfig (cli/config.h) fills in what the config files say for the flags not given,
// and rewrites the two lists into the effective ones.
struct CommonOptions {
  std::string cache_dir;        // "" = cache::Cache::DefaultRoot()
  uint64_t cache_max_size = 0;  // bytes; 0 = no limit
  std::string platform;         // "" = the host's
  std::string pull = "missing";
  int stall_timeout_s = 30;                      // registry::ClientOptions::stall_timeout_s
  std::vector<std::string> registry_mirrors;     // "[REGISTRY=]URL"; docker.io when no REGISTRY
  std::vector<std::string> insecure_registries;  // "HOST[:PORT]"
  std::set<std::string> flags_given;             // long names given on the command line
  // --certs-dir ("" = $IMGFS_CERTS_DIR, else docker's and podman's certs.d).
  std::string certs_dir;
  // --trust-index-from and [index] trust_from: registries (HOST[:PORT]) and repositories
  // (HOST/REPO) whose shared layer indexes are used when found through referrers.
  std::vector<std::string> trust_index_from;
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
  bool push_index = false;                // publish the layer indexes once they are built
};

// `imgfs store`: podman's additional layer store (README "Run containers with podman").
struct StoreOptions {
  CommonOptions common;  // --platform and --pull apply to every image the store resolves
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  std::vector<std::string> fuse_options;  // -o values, after allow_other,suid,dev
  std::string log_file;                   // "" = <cache>/imgfs.log in the background
  std::string prefetch = "landmark";      // per layer, as mount's
};

struct InspectOptions {
  CommonOptions common;
  std::string image;
  std::string format = "text";  // or "json"
};

// `imgfs pull`: docker pull's options and output (README "imgfs pull").
struct PullOptions {
  CommonOptions common;  // its `pull` is not used: a pull always asks the registry
  std::string image;
  bool all_tags = false;
  bool quiet = false;
  // all: every byte of every layer (default); landmark: of eStargz layers, the TOC and the
  // prioritized files' region only (what `mount --prefetch landmark` fetches first).
  std::string prefetch_only = "all";
  bool push_index = false;  // publish the layer indexes once the pull completes
};

// `imgfs index push IMAGE` and `imgfs index convert IMAGE NEWREF` (cli/shared_index.h).
struct IndexOptions {
  CommonOptions common;
  std::string image;
  std::string new_ref;  // convert: TAG, or REPO:TAG in the image's repository
};

// `imgfs ls`, `cat`, `cp`: an image's tree and files read without mounting (cli/image.h).
struct FilesOptions {
  CommonOptions common;
  std::string image;
  std::string path;          // in the image; "" = the root
  bool long_format = false;  // ls -l
  bool recursive = false;    // ls -R
  std::string dest;          // cp: where on the host
};

struct ImagesOptions {
  CommonOptions common;
  std::string format = "text";  // or "json"
};

struct RmiOptions {
  CommonOptions common;
  std::vector<std::string> images;
};

// `imgfs login` / `imgfs logout`: docker's options, messages and credential files
// (registry/credentials.h).
struct LoginOptions {
  CommonOptions common;  // only the registry options are used
  std::string registry;  // "" = Docker Hub
  std::string username;
  std::string password;
  bool password_stdin = false;
};

// `imgfs cache verify`.
struct CacheVerifyOptions {
  CommonOptions common;  // only cache_dir is used
};

// `imgfs cache df` and `imgfs cache gc` (cli/cache.cc).
struct CacheOptions {
  CommonOptions common;
  std::string format = "text";       // df: text or json
  std::optional<uint64_t> max_size;  // gc --max-size; else the configured limit
};

int RunMount(const MountOptions& options);
// Serves the layers of any image podman asks for at MOUNTPOINT (fs/fuse/store_fs.h), in the
// background unless --foreground, until unmounted.
int RunStore(const StoreOptions& options);
// Checks the credentials against the registry (registry/login.h), then stores them as docker
// login does; prints "Login Succeeded". Without -u/-p, the stored credentials are checked
// first, then the user is asked on the terminal.
int RunLogin(const LoginOptions& options);
// Removes the registry's stored credentials: "Removing login credentials for ...", or "Not
// logged in to ..." (exit status 0 either way, as docker).
int RunLogout(const LoginOptions& options);
// The images `imgfs pull` completed: repository, tag, digest, platform, compressed size and
// when any of its layers was last read (or it was pulled). From the cache alone.
int RunImages(const ImagesOptions& options);
// Drops the pulled records of each IMAGE (and its digest form with its last tag), printing
// docker's "Untagged: ..." lines; "No such image" and exit status 1 for one never pulled.
// The cached bytes stay where they are: other images and mounts may use them.
int RunRmi(const RmiOptions& options);
// Lists PATH (a directory's entries, sorted; or the file itself); -R every path below it, one
// per line as find prints them; -l with mode, links, owner, size, mtime (UTC), link target.
int RunLs(const FilesOptions& options);
// Writes the file at PATH (symlinks followed) to stdout.
int RunCat(const FilesOptions& options);
// options.image is "IMAGE:/PATH": copies that file or directory tree to options.dest (into
// it when it is an existing directory), with modes and mtimes; owners and xattrs are not
// copied and devices, fifos and sockets are skipped with a warning, as a non-root user must.
int RunCp(const FilesOptions& options);
// Fetches and verifies an image's every layer into the cache, so that later mounts need no
// registry for it; prints docker's lines (cli/pull_output.h). Exit status 1 on failure, with
// docker's message for an unknown tag or repository.
int RunPull(const PullOptions& options);
// Re-checks everything the cache holds against the digests it was stored under, drops what
// fails and prints a line for each (blob, range, what was found), then a summary line. Exit
// status 1 when anything failed, 0 when everything verified.
int RunCacheVerify(const CacheVerifyOptions& options);
// docker system df's table for the cache: images, blobs and the index, with their sizes on
// disk and what is reclaimable; text or json.
int RunCacheDf(const CacheOptions& options);
// Drops the blobs no image references, then evicts the least recently used down to
// --max-size (or the configured limit), never what a live mount pins; prints what it freed.
int RunCacheGc(const CacheOptions& options);
int RunUmount(const std::string& mountpoint);
// Publishes the cached gzip/tar layer indexes of IMAGE as a referrer artifact of its manifest
// (docs/index-format.md); prints the artifact's digest.
int RunIndexPush(const IndexOptions& options);
// RunIndexPush, then an image index of the manifest and the artifact tagged NEWREF; prints
// NEWREF@<index digest>, the reference that binds the indexes to the image.
int RunIndexConvert(const IndexOptions& options);
int RunInspect(const InspectOptions& options);
// Prints what the mount at `mountpoint` fetched and holds, per layer; format text or json.
int RunStats(const std::string& mountpoint, const std::string& format);

}  // namespace imgfs::cli
