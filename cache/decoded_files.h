// DecodedFiles: whole files of a layer kept decoded beside its blob, for FUSE passthrough.
//
// A mount whose kernel offers passthrough (Linux >= 6.9) hands the kernel a descriptor of a
// file on local disk to serve an open file from: reads then never reach the daemon, and cached
// pages are the local file's own. That needs the file's bytes as they are in the image,
// decoded, in one file: the blob's units are compressed, and a file's bytes are spread over
// them. So a file the mount has read whole is written out once more, decoded:
//
//   blobs/sha256/<2 hex>/<blob hex>.files/<sha256 hex of the file's path in the layer>
//
// The name says which file of which layer; the path, not an index's entry number, so that
// every index of the blob (one built here, a shared one) finds the same file. The bytes are
// written only from bytes the reader verified (the mount's own reads of the store), hashed
// while written, fdatasync'ed, given the hash as the extended attribute user.imgfs.sha256,
// and renamed into place, so a name that exists holds a whole file. Nothing records them in
// the index: they are derived from the blob, counted in its disk bytes (Eviction::ListBlobs),
// and go with it (DropBlob) or before it is trimmed (gc); `imgfs cache verify` hashes each
// against its attribute (StoredDigest) and removes those that fail. docs/cache.md, "Decoded files".
//
// Thread-safety: all methods may be called from many threads and processes at once: writers
// of the same file each write a temporary file of their own and the last rename wins (the
// bytes are the same).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace imgfs::cache {

class DecodedFiles {
 public:
  explicit DecodedFiles(std::string root) : root_(std::move(root)) {}

  // The extended attribute holding a decoded file's "sha256:<hex>".
  static constexpr const char* kDigestXattr = "user.imgfs.sha256";

  // A read-only descriptor (O_CLOEXEC; the caller closes it) of the decoded file at `path` of
  // the layer `blob_digest`, when one is stored with `size` bytes. kNotFound otherwise; one
  // of another size (damage, or a crash before rename on a filesystem that lost it) is
  // removed.
  Result<int> Open(std::string_view blob_digest, std::string_view path, uint64_t size) const;

  // Feeds the file's bytes, in order, to the sink; returns its first error, or its own.
  using Fill = std::function<Status(const std::function<Status(std::string_view)>& sink)>;
  // Writes the decoded file at `path` of `blob_digest` from what `fill` feeds: kIoError
  // (nothing left behind) when it feeds other than `size` bytes, the disk fails, or the
  // filesystem takes no user extended attributes. The temporary file is flock(2)ed while it is
  // written; temporary files of the blob whose writers died (their lock free, untouched for
  // 10 s) are removed first.
  // REQUIRES: every byte `fill` feeds was verified against a digest the image carries.
  Status Write(std::string_view blob_digest, std::string_view path, uint64_t size,
               const Fill& fill) const;

  // Bytes the decoded files of blob `hex` take on disk (st_blocks), temporary files included.
  uint64_t DiskBytes(std::string_view hex) const;
  // Removes every decoded file of blob `hex` and their directory. Open descriptors (the
  // kernel's passthrough files) keep reading what they opened.
  Status RemoveAll(std::string_view hex) const;

  // The names of the blob's decoded files (temporary files left out).
  std::vector<std::string> Files(std::string_view hex) const;
  // The "sha256:<hex>" written beside the decoded file at `path` (kDigestXattr), when it has a
  // valid one. `imgfs cache verify` hashes the file against it (cache/verify.h).
  static std::optional<std::string> StoredDigest(const std::string& path);

  // <root>/blobs/sha256/<2 hex>/<hex>.files
  std::string DirOf(std::string_view hex) const;
  static constexpr std::string_view kDirSuffix = ".files";
  // The blob hex of a directory of decoded files, given its name ("<hex>.files"); "" for any
  // other name.
  static std::string_view BlobHexOfDir(std::string_view name);
  // The file name of `path`: the sha256 hex of the path.
  static std::string NameOf(std::string_view path);

 private:
  const std::string root_;
};

}  // namespace imgfs::cache
