// registry::Client: a registry's mirrors, tried in order before the registry itself, with a
// short memory of the mirrors that failed and of the blobs a pull-through mirror is filling.
#include <string>
#include <vector>

#include "base/log.h"
#include "base/mutex.h"
#include "registry/client_impl.h"

namespace imgfs::registry {

Status Client::Impl::Send(const Call& call, HttpResponse* resp) {
  uint64_t delivered = 0;
  auto it = options_.mirrors.find(call.repo->domain);
  if (it == options_.mirrors.end() || it->second.empty()) {
    return SendTo(call, resp, options_.max_attempts, &delivered);
  }
  std::vector<const std::string*> filling;  // asked after the registry
  for (const std::string& mirror : it->second) {
    std::string authority = UrlSchemeAndAuthority(mirror).second;
    if (authority.empty()) continue;
    if (Remembered(MirrorMemory::kSkipped, authority)) {
      IMGFS_LOG(kDebug, "mirror " << authority << " failed recently; skipped for " << call.what);
      continue;
    }
    if (call.range_from && Remembered(MirrorMemory::kFilling, authority + call.path)) {
      filling.push_back(&mirror);
      continue;
    }
    Status st;
    if (TryMirror(call, mirror, /*accept_whole=*/false, resp, &st) == MirrorOutcome::kServed) {
      return st;
    }
  }
  Status st = SendTo(call, resp, options_.max_attempts, &delivered);
  bool answered = st.ok() && resp->status < 500 && resp->status != 429;
  if (filling.empty() || delivered > 0 || answered) return st;
  for (const std::string* mirror : filling) {
    Status from_mirror;
    if (TryMirror(call, *mirror, /*accept_whole=*/true, resp, &from_mirror) ==
        MirrorOutcome::kServed) {
      return from_mirror;
    }
  }
  return st;
}

Client::Impl::MirrorOutcome Client::Impl::TryMirror(const Call& call, const std::string& mirror,
                                                    bool accept_whole, HttpResponse* resp,
                                                    Status* st) {
  auto [scheme, authority] = UrlSchemeAndAuthority(mirror);
  // The mirror is a registry of its own: its challenges, tokens and credentials.
  Reference via = *call.repo;
  via.domain = authority;
  Call mirrored = call;
  mirrored.repo = &via;
  mirrored.base = scheme + "://" + authority;
  // A whole blob sent for a Range request: the mirror does not hold the blob yet.
  bool whole = false;
  bool refused = false;
  if (call.sink && call.range_from) {
    mirrored.sink = [&](std::string_view chunk) {
      if (!whole && resp->status == 200) {
        whole = true;
        refused = !accept_whole && *call.range_from > kMaxMirrorSkip;
      }
      return !refused && call.sink(chunk);
    };
  }
  uint64_t delivered = 0;
  *st = SendTo(mirrored, resp, /*max_attempts=*/1, &delivered);
  if (whole) {
    Remember(MirrorMemory::kFilling, authority + call.path,
             std::chrono::milliseconds(options_.mirror_fill_ms));
  }
  if (refused) {
    IMGFS_LOG(kInfo, "mirror " << authority << " answered the range at " << *call.range_from
                               << " of " << call.what << " with the whole blob (still filling "
                               << "it); asking registry " << call.repo->domain);
    return MirrorOutcome::kNext;
  }
  if (delivered > 0 && st->ok()) return MirrorOutcome::kServed;
  bool failed = st->ok() ? resp->status >= 500 || resp->status == 429
                         : st->code() == Code::kUnavailable;
  if (failed) {
    Remember(MirrorMemory::kSkipped, authority, std::chrono::seconds(options_.mirror_skip_s));
    IMGFS_LOG(kWarning,
              "mirror " << authority << " failed for " << call.what << " ("
                        << (st->ok() ? "HTTP " + std::to_string(resp->status) : st->message())
                        << "); falling back to registry " << call.repo->domain
                        << ", the mirror is skipped for " << options_.mirror_skip_s << " s");
    // A body broken after some bytes: the caller resumes, from the next source.
    return delivered > 0 ? MirrorOutcome::kServed : MirrorOutcome::kNext;
  }
  if (st->ok() && resp->status >= 200 && resp->status < 300) return MirrorOutcome::kServed;
  IMGFS_LOG(kInfo, "mirror " << authority << " did not serve " << call.what << " ("
                             << (st->ok() ? "HTTP " + std::to_string(resp->status) : st->message())
                             << "); trying the next source");
  return MirrorOutcome::kNext;
}

bool Client::Impl::Remembered(MirrorMemory memory, const std::string& key) {
  MutexLock lock(&mu_);
  const auto& map = memory == MirrorMemory::kSkipped ? mirror_skipped_ : mirror_filling_;
  auto it = map.find(key);
  return it != map.end() && it->second > Clock::now();
}

void Client::Impl::Remember(MirrorMemory memory, const std::string& key,
                            std::chrono::milliseconds how_long) {
  MutexLock lock(&mu_);
  auto& map = memory == MirrorMemory::kSkipped ? mirror_skipped_ : mirror_filling_;
  const Clock::time_point now = Clock::now();
  std::erase_if(map, [&](const auto& entry) { return entry.second <= now; });
  map[key] = now + how_long;
}

}  // namespace imgfs::registry
