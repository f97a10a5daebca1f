// The check of a borrowed index's entry against the layer itself: the 512 bytes in front of a
// regular file's data in the uncompressed stream must be that file's tar header.
//
// An index found through referrers (cli/shared_index.h) is not bound to the image: its unit
// digests make every fetched span the registry's bytes, but an entry could still point into
// another file's data. Before a file of such a layer is read the first time, the reader
// decodes the header in front of the data and compares it here: a valid ustar/GNU header
// checksum, a regular-file type, the size, and the name (when it fits the header's name
// fields; longer names live in PAX or GNU records before it, which are not re-read).
//
// Thread-safety: a pure function.
#pragma once

#include <string_view>

#include "base/status.h"
#include "fs/layer/layer_index.h"

namespace imgfs::fs {

// OK when `header` (512 bytes) is the tar header of `entry`, else kCorrupt naming the entry
// and what differs. A file with holes (Chunk::kZeroUnit) cannot be checked this way: kCorrupt.
Status CheckTarHeaderFor(std::string_view header, const Entry& entry);

}  // namespace imgfs::fs
