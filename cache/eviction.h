// Eviction: what the content store holds, and the operations that give space back. This is
// where LRU eviction over blobs and units by last access lives (`imgfs cache gc`); today it
// offers the seams that policy needs:
//
//   ListBlobs     every blob with a record or a file: size, complete flag, units and bytes
//                 published, last access (unix s), bytes the file takes on disk
//   ListUnits     the published units of one blob (coff, clen)
//   PunchUnit     unpublishes one unit, then punches its bytes out of the blob file
//   DropBlob      deletes a blob's unit and blob records, then its file
//   PinBlobs      a live reader's (a mount's) claim on blobs; PinnedBlobs lists the blobs that
//                 some live process pins, so eviction can skip them
//
// Order makes every step crash-safe: records go before bytes, so the index never says present
// for bytes that are gone. A reader that raced with an eviction finds bytes that do not verify
// and fetches them again (the store heals, see cache/unit_store.h); pinning avoids that cost
// for mounted images.
//
// Pins are files <root>/pins/<pid>.<n> listing blob digests, each held under flock(2) by the
// process that made it for as long as its Pin lives. The lock dies with the process (even one
// killed by SIGKILL or in another PID namespace), so a pin file whose lock can be taken is stale
// and is removed by PinnedBlobs. A blob pinned after PinnedBlobs looked is not protected: the
// evictor should pin-check shortly before it drops.
//
// Access times are per blob (units have none): written when a unit is stored and at most once
// a minute per blob and process when one is read (UnitStore::TouchBlob).
//
// Thread-safety: all methods may be called from many threads at once, and from several
// processes sharing a root. `store` is borrowed.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "cache/cache.h"

namespace imgfs::cache {

class UnitStore;

struct BlobUsage {
  std::string digest;  // "sha256:<hex>"
  uint64_t size = 0;   // blob size when known, else 0
  bool complete = false;
  uint64_t units_present = 0;  // `units` records (0 for a blob written whole)
  uint64_t bytes_present = 0;  // bytes of those units, or size when complete
  int64_t access_unix = 0;     // last recorded access, 0 when never
  uint64_t disk_bytes = 0;     // blocks the blob file and its decoded files take
  uint64_t decoded_bytes = 0;  // the part of disk_bytes its decoded files take
};

struct UnitUsage {
  uint64_t coff = 0;
  uint64_t clen = 0;
};

// A claim on blobs that lasts as long as the object. Move-only.
class Pin {
 public:
  virtual ~Pin() = default;
};

class Eviction {
 public:
  explicit Eviction(UnitStore* store) : store_(store) {}

  BlobStats GetBlobStats(std::string_view blob_digest);
  Result<std::vector<BlobUsage>> ListBlobs();
  Result<std::vector<UnitUsage>> ListUnits(std::string_view blob_digest);

  // Unpublishes the unit at `coff` of a partly present blob and frees its bytes on disk.
  // kNotFound when no unit starts there; kInvalidArgument for a complete blob (its units have
  // no records: drop it whole).
  Status PunchUnit(std::string_view blob_digest, uint64_t coff);
  // Deletes everything stored of the blob (not its layer index, which is metadata), its
  // decoded files included. Absent blobs are OK.
  Status DropBlob(std::string_view blob_digest);
  // Removes the blob's decoded files (cache/decoded_files.h) only: derived bytes, the first to
  // go when a blob is trimmed.
  Status DropDecodedFiles(std::string_view blob_digest);
  // The hex of every blob with a directory of decoded files.
  std::vector<std::string> BlobsWithDecodedFiles();

  // Pins `blob_digests` for the life of the returned object (see above).
  Result<std::unique_ptr<Pin>> PinBlobs(const std::vector<std::string>& blob_digests);
  // Digests pinned by live processes (this one included); removes stale pin files.
  Result<std::set<std::string>> PinnedBlobs();

 private:
  UnitStore* const store_;
};

}  // namespace imgfs::cache
