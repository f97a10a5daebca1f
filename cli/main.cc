// imgfs: mount container images from a registry as lazily fetched, verified, read-only trees.
#include <malloc.h>
#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/config.h"

namespace {

// A SIZE option (bytes, or K/M/G/T: imgfs::cli::ParseByteSize) handed to `set`.
CLI::Option* AddSizeOption(CLI::App* cmd, const std::string& name,
                           std::function<void(uint64_t)> set, const std::string& help) {
  return cmd->add_option_function<std::string>(
      name,
      [name, set](const std::string& text) {
        auto bytes = imgfs::cli::ParseByteSize(text);
        if (!bytes.ok()) throw CLI::ValidationError(name, bytes.status().message());
        set(*bytes);
      },
      help);
}

}  // namespace

int main(int argc, char** argv) {
  // Units are decoded into MiB-sized buffers on any of the FUSE loop's threads. glibc gives
  // each thread that meets a locked arena an arena of its own (up to 8 per core), and each
  // keeps the MiBs freed into it: with the 16 MiB readahead's parallel requests that doubled a
  // mount's peak RSS. Two arenas keep it bounded (docs/architecture.md, "Memory"); a
  // MiB-sized allocation is rare enough that the lock is not contended.
  mallopt(M_ARENA_MAX, 2);
  using imgfs::cli::CommonOptions;
  CLI::App app{"imgfs: mount a container image from a registry, fetching only what is read"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "imgfs 0.1.0");

  auto add_registry = [](CLI::App* cmd, CommonOptions* common) {
    cmd->add_option("--certs-dir", common->certs_dir,
                    "Directory of per-registry CAs and client certificates, <dir>/HOST:PORT/"
                    "{ca.crt,client.cert,client.key}; several separated by ':' (default: "
                    "$IMGFS_CERTS_DIR, else /etc/docker/certs.d:/etc/containers/certs.d)");
    cmd->add_option("--insecure-registry", common->insecure_registries,
                    "HOST[:PORT] or IPv4 CIDR of a registry to reach without checking its "
                    "certificate, or over plain HTTP (repeatable)")
        ->allow_extra_args(false);
  };
  auto add_cache_and_platform = [&](CLI::App* cmd, CommonOptions* common) {
    add_registry(cmd, common);
    cmd->add_option("--cache", common->cache_dir,
                    "Cache root (default: $IMGFS_CACHE, /var/lib/imgfs for root, "
                    "else $XDG_CACHE_HOME/imgfs)");
    cmd->add_option("--platform", common->platform,
                    "Platform to choose from a multi-platform image, os/arch[/variant] "
                    "(default: this host's)");
    AddSizeOption(
        cmd, "--cache-max-size", [common](uint64_t bytes) { common->cache_max_size = bytes; },
        "Keep the cache's blobs under SIZE (bytes, or K/M/G/T, binary), evicting the least "
        "recently used (default: $IMGFS_CACHE_MAX_SIZE, else the config file's [cache] "
        "max_size, else no limit; 0: none)");
    cmd->add_option("--registry-mirror", common->registry_mirrors,
                    "[REGISTRY=]URL: a mirror to try before REGISTRY (default docker.io); "
                    "repeatable, tried in order");
  };
  auto add_common = [&](CLI::App* cmd, CommonOptions* common) {
    add_cache_and_platform(cmd, common);
    cmd->add_option("--pull", common->pull,
                    "missing: use the cached manifest when there is one (default); "
                    "always: revalidate with the registry; never: cache only")
        ->check(CLI::IsMember({"missing", "always", "never"}));
    cmd->add_option("--stall-timeout", common->stall_timeout_s,
                    "Seconds a registry transfer may stay below 1 KiB/s before it fails "
                    "(default 30); a blob gives up after 5 failed attempts")
        ->check(CLI::Range(1, 3600));
    cmd->add_option("--trust-index-from", common->trust_index_from,
                    "REGISTRY[/REPO] whose shared layer indexes are used when found through "
                    "referrers (repeatable; adds to the config's [index] trust_from)")
        ->allow_extra_args(false);
  };

  imgfs::cli::MountOptions mount;
  CLI::App* mount_cmd = app.add_subcommand("mount", "Mount IMAGE read-only at MOUNTPOINT");
  add_common(mount_cmd, &mount.common);
  mount_cmd->add_flag("-f,--foreground", mount.foreground, "Stay in the foreground");
  mount_cmd->add_flag("-d,--debug", mount.debug, "Print FUSE requests (implies nothing else)");
  mount_cmd->add_option("-o", mount.fuse_options, "FUSE mount option, e.g. allow_other")
      ->delimiter(',');
  mount_cmd
      ->add_option("--prefetch", mount.prefetch,
                   "landmark: fetch eStargz layers' prioritized files in the background "
                   "(default); all: then the whole image at low priority; none: only what is read")
      ->check(CLI::IsMember({"landmark", "all", "none"}));
  mount_cmd->add_flag("--push-index", mount.push_index,
                      "Publish the gzip/tar layer indexes built for this mount in the registry "
                      "(imgfs index push) before the mount is ready");
  mount_cmd->add_option("--log", mount.log_file,
                        "Where a background mount logs (default: <cache>/imgfs.log)");
  mount_cmd->add_option("IMAGE", mount.image, "NAME[:TAG|@DIGEST], as docker pull takes it")
      ->required();
  mount_cmd->add_option("MOUNTPOINT", mount.mountpoint, "An existing directory")->required();

  imgfs::cli::StoreOptions store;
  CLI::App* store_cmd = app.add_subcommand(
      "store", "Serve image layers at MOUNTPOINT as podman's additional layer store");
  add_common(store_cmd, &store.common);
  store_cmd->add_flag("-f,--foreground", store.foreground, "Stay in the foreground");
  store_cmd->add_flag("-d,--debug", store.debug, "Print FUSE requests");
  store_cmd->add_option("-o", store.fuse_options, "More FUSE mount options")->delimiter(',');
  store_cmd
      ->add_option("--prefetch", store.prefetch,
                   "landmark (default), all or none: as for mount, per layer served")
      ->check(CLI::IsMember({"landmark", "all", "none"}));
  store_cmd->add_option("--log", store.log_file,
                        "Where a background store logs (default: <cache>/imgfs.log)");
  store_cmd->add_option("MOUNTPOINT", store.mountpoint, "An existing directory")->required();

  imgfs::cli::PullOptions pull;
  CLI::App* pull_cmd = app.add_subcommand(
      "pull", "Fetch and verify an image into the cache, as docker pull does, for offline mounts");
  add_cache_and_platform(pull_cmd, &pull.common);
  pull_cmd->add_flag("-a,--all-tags", pull.all_tags, "Pull every tag of the repository");
  pull_cmd->add_flag("-q,--quiet", pull.quiet, "Print only the image's full reference");
  pull_cmd
      ->add_option("--prefetch-only", pull.prefetch_only,
                   "all: every layer whole (default); landmark: of eStargz layers only the TOC "
                   "and the prioritized files")
      ->check(CLI::IsMember({"landmark", "all"}));
  pull_cmd->add_flag("--push-index", pull.push_index,
                     "Publish the gzip/tar layer indexes in the registry once the pull completes "
                     "(imgfs index push)");
  pull_cmd->add_option("IMAGE", pull.image, "NAME[:TAG|@DIGEST], as docker pull takes it")
      ->required();

  imgfs::cli::IndexOptions index_push, index_convert;
  CLI::App* index_cmd = app.add_subcommand(
      "index", "Share gzip/tar layer indexes through the registry (docs/index-format.md)");
  index_cmd->require_subcommand(1);
  CLI::App* index_push_cmd = index_cmd->add_subcommand(
      "push", "Publish IMAGE's cached layer indexes as a referrer artifact of its manifest");
  add_common(index_push_cmd, &index_push.common);
  index_push_cmd->add_option("IMAGE", index_push.image, "NAME[:TAG|@DIGEST]")->required();
  CLI::App* index_convert_cmd = index_cmd->add_subcommand(
      "convert", "Push an image index of IMAGE and its layer indexes, tagged NEWREF");
  add_common(index_convert_cmd, &index_convert.common);
  index_convert_cmd->add_option("IMAGE", index_convert.image, "NAME[:TAG|@DIGEST]")->required();
  index_convert_cmd
      ->add_option("NEWREF", index_convert.new_ref, "TAG, or NAME:TAG in IMAGE's repository")
      ->required();

  imgfs::cli::FilesOptions ls, cat, cp;
  CLI::App* ls_cmd = app.add_subcommand("ls", "List a directory of an image, without mounting it");
  add_common(ls_cmd, &ls.common);
  ls_cmd->add_flag("-l", ls.long_format, "Mode, links, owner, size, mtime (UTC), link target");
  ls_cmd->add_flag("-R", ls.recursive, "Every path below PATH, one per line, as find prints them");
  ls_cmd->add_option("IMAGE", ls.image)->required();
  ls_cmd->add_option("PATH", ls.path, "A path in the image (default: /)");
  CLI::App* cat_cmd = app.add_subcommand("cat", "Print a file of an image, without mounting it");
  add_common(cat_cmd, &cat.common);
  cat_cmd->add_option("IMAGE", cat.image)->required();
  cat_cmd->add_option("PATH", cat.path, "A file in the image")->required();
  CLI::App* cp_cmd = app.add_subcommand(
      "cp", "Copy a file or directory out of an image, without mounting it");
  add_common(cp_cmd, &cp.common);
  cp_cmd->add_option("SOURCE", cp.image, "IMAGE:/PATH")->required();
  cp_cmd->add_option("DEST", cp.dest, "A host path (into it when it is a directory)")->required();

  imgfs::cli::ImagesOptions images;
  CLI::App* images_cmd = app.add_subcommand("images",
                                            "List the images imgfs pull put in the cache");
  images_cmd->add_option("--cache", images.common.cache_dir, "Cache root");
  images_cmd->add_option("--format", images.format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  imgfs::cli::RmiOptions rmi;
  CLI::App* rmi_cmd = app.add_subcommand("rmi", "Forget pulled images (their cached bytes stay)");
  rmi_cmd->add_option("--cache", rmi.common.cache_dir, "Cache root");
  rmi_cmd->add_option("IMAGE", rmi.images)->required();

  CLI::App* cache_cmd = app.add_subcommand(
      "cache", "Check, measure and trim the cache shared by mounts and pulls");
  cache_cmd->require_subcommand(1);
  imgfs::cli::CacheVerifyOptions cache_verify;
  CLI::App* cache_verify_cmd = cache_cmd->add_subcommand(
      "verify", "Re-hash everything cached; drop and report what fails (exit status 1)");
  cache_verify_cmd->add_option("--cache", cache_verify.common.cache_dir, "Cache root");
  imgfs::cli::CacheOptions cache_df, cache_gc;
  CLI::App* cache_df_cmd = cache_cmd->add_subcommand(
      "df", "Show the cache's disk usage, as docker system df");
  cache_df_cmd->add_option("--cache", cache_df.common.cache_dir, "Cache root");
  cache_df_cmd->add_option("--format", cache_df.format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  CLI::App* cache_gc_cmd = cache_cmd->add_subcommand(
      "gc", "Drop blobs no image uses, then the least recently used down to a size");
  cache_gc_cmd->add_option("--cache", cache_gc.common.cache_dir, "Cache root");
  AddSizeOption(
      cache_gc_cmd, "--max-size", [&cache_gc](uint64_t bytes) { cache_gc.max_size = bytes; },
      "Evict the least recently used blobs until the cache takes at most SIZE on "
      "disk (bytes, or K/M/G/T, binary; default: the configured limit, if any)");

  std::string umount_point;
  CLI::App* umount_cmd = app.add_subcommand("umount", "Unmount an imgfs mount");
  umount_cmd->alias("unmount");
  umount_cmd->add_option("MOUNTPOINT", umount_point)->required();

  imgfs::cli::InspectOptions inspect;
  CLI::App* inspect_cmd = app.add_subcommand(
      "inspect", "Print an image's manifest digest, platform, layers, config");
  add_common(inspect_cmd, &inspect.common);
  inspect_cmd->add_option("--format", inspect.format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  inspect_cmd->add_option("IMAGE", inspect.image)->required();

  std::string stats_point, stats_format = "text";
  CLI::App* stats_cmd = app.add_subcommand(
      "stats", "Show per layer what a mount fetched and what is cached");
  stats_cmd->add_option("--format", stats_format, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}));
  stats_cmd->add_option("MOUNTPOINT", stats_point)->required();

  CommonOptions info;
  CLI::App* info_cmd = app.add_subcommand(
      "info", "Print the effective configuration and where each value came from");
  add_common(info_cmd, &info);
  imgfs::cli::LoginOptions login;
  CLI::App* login_cmd = app.add_subcommand(
      "login", "Log in to a registry (default Docker Hub), storing the credentials as docker does");
  add_registry(login_cmd, &login.common);
  login_cmd->add_option("-u,--username", login.username, "Username");
  auto* password_opt = login_cmd->add_option("-p,--password", login.password, "Password");
  login_cmd->add_flag("--password-stdin", login.password_stdin, "Take the password from stdin")
      ->excludes(password_opt);
  login_cmd->add_option("SERVER", login.registry, "Registry (default: docker.io)");
  imgfs::cli::LoginOptions logout;
  CLI::App* logout_cmd = app.add_subcommand(
      "logout", "Remove a registry's stored credentials (default Docker Hub)");
  logout_cmd->add_option("SERVER", logout.registry, "Registry (default: docker.io)");

  CLI11_PARSE(app, argc, argv);

  // The config files fill in what the command line did not say (cli/config.h).
  const std::pair<CLI::App*, CommonOptions*> commons[] = {
      {mount_cmd, &mount.common},
      {pull_cmd, &pull.common},
      {ls_cmd, &ls.common},
      {cat_cmd, &cat.common},
      {cp_cmd, &cp.common},
      {images_cmd, &images.common},
      {rmi_cmd, &rmi.common},
      {inspect_cmd, &inspect.common},
      {info_cmd, &info},
      {login_cmd, &login.common},
      {cache_df_cmd, &cache_df.common},
      {cache_gc_cmd, &cache_gc.common},
      {index_push_cmd, &index_push.common},
      {index_convert_cmd, &index_convert.common}};
  for (const auto& [cmd, common] : commons) {
    if (!*cmd) continue;
    for (const CLI::Option* opt : cmd->get_options()) {
      if (opt->count() == 0) continue;
      for (const std::string& name : opt->get_lnames()) common->flags_given.insert("--" + name);
    }
    auto config = imgfs::cli::ResolveConfig(common);
    if (!config.ok()) {
      std::cerr << "imgfs: " << config.status().message() << "\n";
      return 1;
    }
    if (cmd == info_cmd) return imgfs::cli::RunInfo(*config);
  }

  if (*mount_cmd) return imgfs::cli::RunMount(mount);
  if (*store_cmd) return imgfs::cli::RunStore(store);
  if (*login_cmd) return imgfs::cli::RunLogin(login);
  if (*logout_cmd) return imgfs::cli::RunLogout(logout);
  if (*pull_cmd) return imgfs::cli::RunPull(pull);
  if (*ls_cmd) return imgfs::cli::RunLs(ls);
  if (*images_cmd) return imgfs::cli::RunImages(images);
  if (*rmi_cmd) return imgfs::cli::RunRmi(rmi);
  if (*cache_verify_cmd) return imgfs::cli::RunCacheVerify(cache_verify);
  if (*cat_cmd) return imgfs::cli::RunCat(cat);
  if (*cp_cmd) return imgfs::cli::RunCp(cp);
  if (*cache_df_cmd) return imgfs::cli::RunCacheDf(cache_df);
  if (*cache_gc_cmd) return imgfs::cli::RunCacheGc(cache_gc);
  if (*umount_cmd) return imgfs::cli::RunUmount(umount_point);
  if (*inspect_cmd) return imgfs::cli::RunInspect(inspect);
  if (*index_push_cmd) return imgfs::cli::RunIndexPush(index_push);
  if (*index_convert_cmd) return imgfs::cli::RunIndexConvert(index_convert);
  if (*stats_cmd) return imgfs::cli::RunStats(stats_point, stats_format);
  return 2;
}
