// A containerd of the tests' own, driven through ctr-remote (Debian stargz-snapshotter) to
// convert images to eStargz and zstd:chunked with the real converter.
//
// Its root, state and socket live in a temp dir, so nothing of the host's containerd (if any)
// is touched; the process stops with the object (and with the test binary). Conversions
// fetch content only (`ctr content fetch`), never unpack: containerd's unpack cannot apply
// a hard link into a lower layer, which the layered test image has.
//
// Not thread-safe; one owner. Failure: a missing binary names scripts/setup; a containerd
// that does not answer gives its log.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "tests/support/files.h"
#include "tests/support/process.h"

namespace imgfs::test {

class PrivateContainerd {
 public:
  PrivateContainerd() : dir_("containerd") {}
  PrivateContainerd(const PrivateContainerd&) = delete;
  PrivateContainerd& operator=(const PrivateContainerd&) = delete;

  // Starts containerd and waits until `ctr-remote version` answers.
  Status Start();

  // `ctr-remote --address SOCK ARGS...`, up to 10 minutes.
  Status Ctr(std::vector<std::string> args);

  // Fetches `source` (a plain-HTTP registry reference), converts it with
  // `ctr-remote image convert --<kind> --oci` ("estargz" or "zstdchunked") to `target` and
  // pushes `target` over plain HTTP. Fetching the same source twice is cheap. The fetch and
  // the push are retried (see CtrWithRetries).
  Status ConvertAndPush(const std::string& source, const std::string& kind,
                        const std::string& target);

 private:
  // Ctr, tried up to three times: a push or fetch over a fresh connection to the test
  // registry at times ends in "unexpected EOF" inside ctr-remote under load, and both are
  // idempotent. Every attempt's error is kept when all fail.
  Status CtrWithRetries(const std::vector<std::string>& args);

  TempDir dir_;
  std::string socket_;
  BackgroundProcess process_;
};

}  // namespace imgfs::test
