// Verifier: re-checks everything the cache holds against the digests it was stored under, and
// drops what fails (`imgfs cache verify`). Reads never serve bytes that fail their check anyway
// (cache/unit_store.h); this finds damage before a reader meets it, and gives the space back.
//
// What is checked, record by record:
//   blobs    a complete blob: its whole file hashes to the blob digest and has the recorded
//            size. Failing: the blob is dropped (Eviction::DropBlob: records, then the file).
//   units    a unit of a partly present blob: its bytes hash to the sha256 its record carries,
//            or, for a unit recorded without one (eStargz, zstd:chunked: the trusted digests
//            cover the DECODED chunks), pass the check VerifyHooks::unit_verifier makes from
//            the blob's layer index. Failing: the unit is punched (Eviction::PunchUnit: record,
//            then bytes).
//   layers   a layer index: its checksum, then VerifyHooks::check_layer_index (that it
//            deserializes and describes its blob). Failing: the record is deleted.
//   docs     a manifest, index or config: its bytes hash to its key. Failing: deleted.
//   refs     a reference record: it decodes to a valid digest. Failing: deleted.
//   decoded files (cache/decoded_files.h) of every blob: each hashes to the digest in its
//            user.imgfs.sha256 attribute. Failing: removed (`range` names the file).
// Layer indexes are checked before units, so that units are checked against indexes that are
// usable. Records go before bytes (as eviction orders it), so a crash during a verify leaves
// unreferenced bytes, never a record that lies.
//
// Running next to mounts and pulls is safe: bytes that fail are read again through a fresh
// descriptor before they are called corrupt (a blob file may have been replaced by a commit),
// and what is dropped is fetched again by the next reader. Blob files without records (a crash
// between write and publish) and temporary files are not checked: nothing serves them.
//
// Thread-safety: Verify may run on several threads and in several processes at once (each
// drop is its own transaction); the hooks are called on the calling thread. The stores are
// borrowed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace imgfs::cache {

class Eviction;
class MetadataStore;
class UnitStore;

// What the cache cannot know itself: the layer format lives above it (fs/layer).
struct VerifyHooks {
  // OK when `serialized` (whose checksum matched) is a usable index of blob `blob_digest`.
  // Not set: only the checksum is checked.
  std::function<Status(std::string_view blob_digest, std::string_view serialized)>
      check_layer_index;
  // The check of the unit of `blob_digest` at `coff`, `clen` bytes long, recorded without a
  // sha256: called with its stored bytes. An error (no index describes such a unit) fails
  // the unit, as nothing else can vouch for its bytes. Not set: every such unit fails.
  using UnitCheck = std::function<Status(std::string_view compressed)>;
  std::function<Result<UnitCheck>(std::string_view blob_digest, uint64_t coff, uint64_t clen)>
      unit_verifier;
};

// One thing that failed its check.
struct VerifyFailure {
  std::string kind;     // "blob", "unit", "layer index", "document", "reference",
                        // "decoded file"
  std::string key;      // the blob or document digest, or the reference
  std::string range;    // "[coff, end)" of a blob's bytes, "" for records
  std::string problem;  // what was found instead of what was expected
  Status dropped;       // OK when it was dropped; else why it could not be

  // "unit of blob sha256:... bytes [0, 1024): hashes to ..., expected ...; dropped"
  std::string ToString() const;
};

struct VerifyReport {
  uint64_t complete_blobs = 0;  // checked whole
  uint64_t units = 0;           // units of partly present blobs checked
  uint64_t bytes = 0;           // blob bytes hashed
  uint64_t layer_indexes = 0;
  uint64_t documents = 0;
  uint64_t references = 0;
  uint64_t decoded_files = 0;  // decoded files checked (their bytes count in `bytes`)
  std::vector<VerifyFailure> failures;
};

class Verifier {
 public:
  Verifier(UnitStore* store, MetadataStore* metadata, Eviction* eviction)
      : store_(store), metadata_(metadata), eviction_(eviction) {}

  // Checks everything as described above, drops what fails, and reports it. `on_failure`
  // (optional) is called for each failure as it is found, after its drop. Errors of the walk
  // itself (the index cannot be read) are returned; damage is in the report.
  Result<VerifyReport> Verify(const VerifyHooks& hooks,
                              const std::function<void(const VerifyFailure&)>& on_failure = {});

 private:
  UnitStore* const store_;
  MetadataStore* const metadata_;
  Eviction* const eviction_;
};

}  // namespace imgfs::cache
