// podman's uses of the layers `imgfs store` serves, kept on disk so that a restarted store
// keeps the pins of layers in use (podman's containers keep symlinks into the store and its
// bookkeeping expects a later `rmdir` to release what an earlier `use` counted).
//
// One JSON file per mount point, under the cache root:
//   <root>/store/uses-<first 16 hex of sha256 of the absolute mount point>.json
//   {"mountpoint": "/path", "layers": [{"ref": R, "digest": D, "blob": B, "uses": N}, ...]}
// where D is the digest podman named the layer by (compressed or TOC digest) and B the
// compressed blob digest that is pinned. Only layers with uses > 0 are written. Saves replace
// the file atomically (a temporary file renamed over it), so a crash leaves the old or the new
// counts, never a mix; a file that does not parse is reported and treated as empty.
//
// Thread-safety: free functions, no state; callers serialize saves of one file.
#pragma once

#include <map>
#include <string>

#include "base/status.h"

namespace imgfs::cli {

struct StoredUse {
  std::string blob;  // the compressed blob digest, what is pinned
  int uses = 0;
};

// Keyed by "<ref> <digest>".
using StoredUses = std::map<std::string, StoredUse>;

// The file that keeps the counts of the store at `mountpoint` (made absolute first).
std::string UsesFilePath(const std::string& cache_root, const std::string& mountpoint);

// The counts in `path`; an absent file is no counts.
Result<StoredUses> LoadUses(const std::string& path);

// Replaces `path` with `uses` (entries with uses <= 0 left out), creating its directory.
Status SaveUses(const std::string& path, const std::string& mountpoint, const StoredUses& uses);

}  // namespace imgfs::cli
