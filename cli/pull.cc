// imgfs pull: an image's every layer fetched and verified into the cache, with docker pull's
// output. See commands.h (RunPull) and pull_output.h.
//
// One image: resolve as mount does but always asking the registry (--pull always), then, per
// layer not complete in the cache yet, the index built (plain gzip/tar: the one streaming pass
// that verifies, stores and indexes the blob) and every unit still missing fetched and
// verified (fs::Prefetcher; for eStargz/zstd:chunked the TOC's chunks), up to
// kMaxParallelLayers layers at once. Every layer fetched whole is checked against the config's
// diff_id (the gzip/tar pass; for eStargz/zstd:chunked the Prefetcher once all units are in),
// and a mismatch fails the pull naming the layer. What the cache already holds is never fetched
// again, so a blob shared by two images or tags is fetched once. Finally the pull is recorded
// (docker's reference store) under "pulled <reference>" in the cache's refs, next to the resolver's
// tag record that lets a `--pull missing` mount resolve the tag offline.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>
#include <vector>

#include "base/log.h"
#include "base/mutex.h"
#include "cache/cache.h"
#include "cli/cache_usage.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/layer_indexing.h"
#include "cli/pull_output.h"
#include "cli/registry_blob_source.h"
#include "cli/shared_index.h"
#include "fs/layer/layer_builder.h"
#include "fs/tree/image_layers.h"
#include "fs/tree/layer_check.h"
#include "fs/tree/prefetcher.h"

namespace imgfs::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kRedrawInterval = std::chrono::milliseconds(100);

// docker's layer id: the first 12 hex digits of the digest.
std::string ShortId(const std::string& digest) {
  size_t colon = digest.find(':');
  return digest.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

// "alpine", "host:5000/app" (no tag, no digest): what docker's CLI calls IsNameOnly.
bool IsNameOnly(std::string_view image) {
  if (image.find('@') != std::string_view::npos) return false;
  size_t slash = image.rfind('/');
  return image.find(':', slash == std::string_view::npos ? 0 : slash + 1) == std::string_view::npos;
}

Result<fs::Prefetcher::Mode> ParsePrefetchOnly(std::string_view s) {
  if (s == "all") return fs::Prefetcher::Mode::kAll;
  if (s == "landmark") return fs::Prefetcher::Mode::kLandmark;
  return Status::InvalidArgument("--prefetch-only must be landmark or all, not '" + std::string(s) +
                                 "'");
}

// docker's words (distribution's TranslatePullError) for what the registry does not know or
// will not show: scripts written for docker match them. registry::Client reports these cases
// as kNotFound "repository not found: ..." / "manifest unknown: ..." and kUnauthorized
// "authentication required ...", and docker quotes the registry's error code and message,
// which distribution words as below.
Status DockerPullError(const Status& s, const registry::Reference& ref) {
  auto starts = [&](const char* prefix) { return s.message().rfind(prefix, 0) == 0; };
  if (s.IsNotFound() && starts("repository not found")) {
    return Status::NotFound("repository " + FamiliarName(ref) +
                            " not found: name unknown: repository name not known to registry");
  }
  if (s.IsNotFound() && starts("manifest unknown")) {
    return Status::NotFound("manifest for " + FamiliarString(ref) +
                            " not found: manifest unknown: manifest unknown");
  }
  if (s.code() == Code::kUnauthorized && starts("authentication required")) {
    return Status::Unauthorized("pull access denied for " + FamiliarName(ref) +
                                ", repository does not exist or may require 'docker login': "
                                "denied: requested access to the resource is denied");
  }
  return s;
}

// Whether the cache holds everything of the layer that `mode` asks for (and, for all of it,
// has checked it against `diff_id`, the config's).
bool LayerComplete(const fs::LayerIndex& index, const std::string& diff_id,
                   fs::Prefetcher::Mode mode, cache::Cache* cache) {
  if (mode == fs::Prefetcher::Mode::kAll && fs::DiffIdUnchecked(index, diff_id)) return false;
  if (cache->GetBlobStats(index.blob_digest).complete) return true;
  for (const fs::Unit& u : index.units) {
    if (u.clen == 0) continue;
    if (mode == fs::Prefetcher::Mode::kLandmark && u.coff >= index.prefetch_end) continue;
    if (!cache->HasUnit(index.blob_digest, u.coff, u.clen)) return false;
  }
  return true;
}

struct PullContext {
  cache::Cache* cache;
  registry::Client* client;
  PullOutput* out;
  fs::Prefetcher::Mode mode;
  bool push_index = false;  // --push-index
};

// The layers of one image that are not complete in the cache, fetched in parallel with
// docker's per-layer lines: "Pulling fs layer" (and "Waiting" beyond the parallelism), on a
// terminal "Downloading" with a progress bar, "Verifying Checksum", "Download complete", and
// "Pull complete" in layer order (docker extracts bottom-up; here the layer is usable then).
class LayerFetch {
 public:
  LayerFetch(const PullContext& ctx, const registry::Reference& ref,
             std::vector<registry::Descriptor> layers, std::vector<std::string> diff_ids,
             std::vector<bool> present)
      : ctx_(ctx),
        registry_source_(ctx.client, ref),
        source_(&registry_source_),
        layers_(std::move(layers)),
        diff_ids_(std::move(diff_ids)),
        present_(std::move(present)),
        state_(layers_.size(), State::kWaiting),
        started_(layers_.size()) {}

  Status Run() {
    std::vector<size_t> todo;
    for (size_t i = 0; i < layers_.size(); ++i) {
      ctx_.out->LayerStatus(ShortId(layers_[i].digest),
                            present_[i] ? "Already exists" : "Pulling fs layer");
      if (!present_[i]) todo.push_back(i);
    }
    for (size_t k = kMaxParallelLayers; k < todo.size(); ++k) {
      ctx_.out->LayerStatus(ShortId(layers_[todo[k]].digest), "Waiting");
    }
    std::thread drawer;
    if (ctx_.out->mode() == PullOutput::Mode::kTerminal) drawer = std::thread([&] { Draw(); });
    Status s = ForEachInParallel(todo.size(), kMaxParallelLayers,
                                 [&](size_t k) { return FetchLayer(todo[k]); });
    {
      MutexLock lock(&mu_);
      finished_ = true;
    }
    cv_.SignalAll();
    if (drawer.joinable()) drawer.join();
    return s;
  }

 private:
  enum class State { kWaiting, kDownloading, kDone, kFailed };

  Status FetchLayer(size_t i) EXCLUDES(mu_) {
    const registry::Descriptor& d = layers_[i];
    {
      MutexLock lock(&mu_);
      state_[i] = State::kDownloading;
      started_[i] = Clock::now();
    }
    Status s = IndexAndFetch(d, diff_ids_[i]);
    MutexLock lock(&mu_);
    if (!s.ok()) {
      state_[i] = State::kFailed;
      return s.WithContext("layer " + d.digest);
    }
    state_[i] = State::kDone;
    ctx_.out->LayerStatus(ShortId(d.digest), "Verifying Checksum");
    ctx_.out->LayerStatus(ShortId(d.digest), "Download complete");
    // "Pull complete" for every finished layer whose lower layers are all done.
    while (next_complete_ < layers_.size() &&
           (present_[next_complete_] || state_[next_complete_] == State::kDone)) {
      if (!present_[next_complete_]) {
        ctx_.out->LayerStatus(ShortId(layers_[next_complete_].digest), "Pull complete");
      }
      ++next_complete_;
    }
    return Status::Ok();
  }

  // The index (a gzip/tar layer's pass checks its diff_id), then what is missing, and for a
  // TOC layer fetched whole the diff_id check of its stream (the Prefetcher's, kAll).
  Status IndexAndFetch(const registry::Descriptor& d, const std::string& diff_id) {
    IMGFS_ASSIGN_OR_RETURN(
        fs::LayerIndex built,
        fs::GetOrBuildLayerIndex(ToLayerDescriptor(d, diff_id), ctx_.cache, &source_));
    auto index = std::make_shared<const fs::LayerIndex>(std::move(built));
    if (LayerComplete(*index, diff_id, ctx_.mode, ctx_.cache)) return Status::Ok();
    fs::Prefetcher prefetcher(std::make_shared<const fs::ImageLayers>(
                                  std::vector<std::shared_ptr<const fs::LayerIndex>>{index},
                                  std::vector<std::string>{diff_id}),
                              ctx_.cache, &source_, ctx_.mode);
    prefetcher.Start();
    IMGFS_RETURN_IF_ERROR(prefetcher.Wait());
    // The index in hand predates the check; the cache's records its outcome.
    if (Result<fs::LayerIndex> now = fs::GetOrBuildLayerIndex(ToLayerDescriptor(d, diff_id),
                                                              ctx_.cache, nullptr);
        now.ok()) {
      index = std::make_shared<const fs::LayerIndex>(std::move(now).value());
    }
    if (!LayerComplete(*index, diff_id, ctx_.mode, ctx_.cache)) {
      return Status::Unavailable("some of its units could not be fetched; run the pull again");
    }
    return Status::Ok();
  }

  // The terminal's progress bars: every layer being downloaded, redrawn every
  // kRedrawInterval until Run's workers are done.
  void Draw() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (!finished_) {
      for (size_t i = 0; i < layers_.size(); ++i) {
        if (state_[i] != State::kDownloading) continue;
        auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() -
                                                                             started_[i]);
        ctx_.out->LayerProgress(ShortId(layers_[i].digest), "Downloading",
                                source_.Get(layers_[i].digest).bytes, layers_[i].size,
                                elapsed.count());
      }
      const auto next_draw = Clock::now() + kRedrawInterval;
      while (!finished_ && Clock::now() < next_draw) cv_.WaitFor(next_draw - Clock::now());
    }
  }

  // Constant after construction.
  const PullContext& ctx_;
  RegistryBlobSource registry_source_;
  MeteredBlobSource source_;  // thread-safe
  const std::vector<registry::Descriptor> layers_;
  const std::vector<std::string> diff_ids_;  // the config's, one per layer
  const std::vector<bool> present_;

  // State below is protected by mu_, which also orders the lines of one layer, and the drawer
  // against them.
  Mutex mu_;
  CondVar cv_{&mu_};  // signalled when finished_ is set
  std::vector<State> state_ GUARDED_BY(mu_);
  std::vector<Clock::time_point> started_ GUARDED_BY(mu_);
  size_t next_complete_ GUARDED_BY(mu_) = 0;
  bool finished_ GUARDED_BY(mu_) = false;
};

// Pulls one image. True when docker would say "Downloaded newer image": something was
// fetched, or the reference did not name this image before.
Result<bool> PullImage(const PullContext& ctx, const Target& target) {
  const registry::Reference& ref = target.ref;
  auto image = ResolveImage(ref, target.platform, PullPolicy::kAlways, ctx.client, ctx.cache);
  if (!image.ok()) return DockerPullError(image.status(), ref);
  // As docker, once the registry has answered with the manifest.
  ctx.out->Message((ref.digest.empty() ? ref.tag : ref.digest) + ": Pulling from " +
                   ref.repository);
  IMGFS_RETURN_IF_ERROR(CheckPlatform(*image, target));
  // Held until the pull is recorded: a size limit must not evict the layers meanwhile.
  IMGFS_ASSIGN_OR_RETURN(std::unique_ptr<cache::Pin> pin,
                         PinLayers(*ctx.cache, image->parsed.layers));
  const std::string digest = image->index ? image->index->digest : image->manifest.digest;

  // The same blob twice in one manifest is one layer to fetch (and one line, as in docker).
  std::vector<registry::Descriptor> layers;
  std::vector<std::string> diff_ids;  // resolve checked: one per manifest layer
  for (size_t i = 0; i < image->parsed.layers.size(); ++i) {
    const registry::Descriptor& d = image->parsed.layers[i];
    bool seen = false;
    for (const registry::Descriptor& l : layers) seen = seen || l.digest == d.digest;
    if (seen) continue;
    layers.push_back(d);
    diff_ids.push_back(i < image->diff_ids.size() ? image->diff_ids[i] : std::string());
  }
  std::vector<bool> present;
  bool all_present = true;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto index = fs::GetOrBuildLayerIndex(ToLayerDescriptor(layers[i], diff_ids[i]), ctx.cache,
                                          nullptr);
    present.push_back(index.ok() && LayerComplete(*index, diff_ids[i], ctx.mode, ctx.cache));
    all_present = all_present && present.back();
  }
  // As docker: an image that is all there already gets no layer lines at all.
  if (!all_present) {
    LayerFetch fetch(ctx, ref, std::move(layers), std::move(diff_ids), std::move(present));
    IMGFS_RETURN_IF_ERROR(fetch.Run());
  }
  ctx.out->Message("Digest: " + digest);
  if (ctx.push_index) {
    // Every layer is indexed now: share the indexes (cli/shared_index.h).
    Result<PushedIndexes> pushed = PushSharedIndexes(*ctx.client, *image, *ctx.cache);
    if (!pushed.ok()) return pushed.status().WithContext("--push-index");
    ctx.out->Message("Index: " + pushed->artifact.digest);
  }

  auto before = ctx.cache->GetReference(PulledKey(ref));
  bool newer = !all_present || !before.ok() || before->manifest_digest != digest;
  IMGFS_RETURN_IF_ERROR(ctx.cache->PutReference(PulledKey(ref), digest));
  if (ref.digest.empty()) {
    // docker records the digest form too: a later pull by digest is "up to date".
    registry::Reference by_digest = ref;
    by_digest.tag.clear();
    by_digest.digest = digest;
    IMGFS_RETURN_IF_ERROR(ctx.cache->PutReference(PulledKey(by_digest), digest));
  }
  return newer;
}

std::string StatusLine(bool newer, const std::string& name) {
  return std::string("Status: ") +
         (newer ? "Downloaded newer image for " : "Image is up to date for ") + name;
}

}  // namespace

int RunPull(const PullOptions& options) {
  CommonOptions common = options.common;
  common.pull = "always";
  auto target = ParseTarget(options.image, common);
  if (!target.ok()) return Fail(target.status());
  auto mode = ParsePrefetchOnly(options.prefetch_only);
  if (!mode.ok()) return Fail(mode.status());
  const bool name_only = IsNameOnly(options.image);
  if (options.all_tags && !name_only) {
    return Fail(Status::InvalidArgument("tag can't be used with --all-tags/-a"));
  }
  auto cache = OpenCacheForWriting(common);
  if (!cache.ok()) return Fail(cache.status());
  registry::Client client(DefaultClientOptions(common));
  PullOutput out(PullOutput::ModeFor(options.quiet, STDOUT_FILENO));
  PullContext ctx{cache->get(), &client, &out, *mode, options.push_index};

  if (!options.all_tags) {
    if (name_only) out.Message("Using default tag: " + target->ref.tag);
    auto newer = PullImage(ctx, *target);
    if (!newer.ok()) return Fail(newer.status());
    out.Message(StatusLine(*newer, FamiliarString(target->ref)));
    std::printf("%s\n", target->ref.String().c_str());
    return 0;
  }

  // docker pull -a: one block per tag, in the registry's order; a tag that fails is skipped
  // (docker logs it in its daemon; imgfs says so on stderr) and the others still count.
  registry::Reference repo = target->ref;
  repo.tag.clear();
  auto tags = client.ListTags(repo);
  if (!tags.ok()) return Fail(DockerPullError(tags.status(), repo));
  bool newer = false;
  for (const std::string& tag : *tags) {
    Target one = *target;
    one.ref.tag = tag;
    auto pulled = PullImage(ctx, one);
    if (!pulled.ok()) {
      IMGFS_LOG(kWarning,
                "not pulled: " << FamiliarString(one.ref) << ": " << pulled.status().message());
      continue;
    }
    newer = newer || *pulled;
  }
  out.Message(StatusLine(newer, FamiliarName(repo)));
  std::printf("%s\n", repo.Repo().c_str());
  return 0;
}

}  // namespace imgfs::cli
