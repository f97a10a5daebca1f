// Images a lying or broken registry would serve, pushed to the real test registry: a config
// that is not what the manifest's layers need, a layer blob written byte for byte by the test
// (a gzip bomb), a manifest that lies about a layer.
//
// The registry (distribution) verifies the digest of every blob it is given and that a
// manifest's blobs exist, so the lies are those a registry lets through: the content of a
// config, a layer's inflated size, a descriptor's size. Faults of the transfer itself are the
// blob proxy's (blob_proxy.h).
//
// Thread-safety: plain functions, reentrant. Failure: Status with curl's or the registry's
// answer.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "tests/support/test_images.h"

namespace imgfs::test {

// Uploads the file at `path` as a blob of host/repo (POST then PUT ?digest=). Returns its
// digest.
Result<std::string> PushBlobFile(const std::string& host, const std::string& repo,
                                 const std::string& path);
// The same for bytes in memory.
Result<std::string> PushBlob(const std::string& host, const std::string& repo,
                             const std::string& bytes);

// `base` (an image manifest already in the registry) pushed again as base.repo:`tag` after
// `edit` changed its manifest JSON and/or its config (the config is pushed as a new blob and
// the manifest's config descriptor updated to it unless `edit` set it itself).
Result<PushedImage> PushEditedImage(
    const PushedImage& base, const std::string& tag,
    const std::function<void(nlohmann::json* manifest, std::string* config)>& edit);

// A one-layer OCI image host/repo:tag whose layer is the blob at `layer_path` (media type
// tar+gzip) and whose config lists `diff_id` for it.
Result<PushedImage> PushOneLayerImage(const std::string& host, const std::string& repo,
                                      const std::string& tag, const std::string& layer_path,
                                      const std::string& diff_id);

// Writes a gzip bomb to `path`: `members` gzip members of `member_bytes` zeros each (about
// 1 KiB of blob per MiB of zeros). Returns the blob's size.
Result<uint64_t> WriteZeroBomb(const std::string& path, uint64_t member_bytes, int members);

}  // namespace imgfs::test
