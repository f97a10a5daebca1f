#include "cli/shared_index.h"

#include <nlohmann/json.hpp>

#include "base/digest.h"
#include "base/log.h"
#include "cli/layer_indexing.h"
#include "fs/layer/shared_index.h"
#include "registry/manifest.h"

namespace imgfs::cli {
namespace {

using nlohmann::json;

// OCI 1.1's empty descriptor: the config of an artifact manifest that needs none.
constexpr std::string_view kEmptyMediaType = "application/vnd.oci.empty.v1+json";
constexpr std::string_view kEmptyJson = "{}";

json DescriptorJson(std::string_view media_type, std::string_view digest, uint64_t size) {
  return json{{"mediaType", media_type}, {"digest", digest}, {"size", size}};
}

std::string ReferrersTag(const std::string& digest) {
  std::string tag = digest;
  tag[tag.find(':')] = '-';
  return tag;
}

bool IsZstdLayer(const registry::Descriptor& d) {
  return d.media_type.find("zstd") != std::string::npos;
}

// Adds `artifact` to the referrers tag schema's index of `subject` (read, add, put).
Status AddToReferrersTag(registry::Client& client, const registry::Reference& repo,
                         const std::string& subject, const json& artifact) {
  const std::string tag = ReferrersTag(subject);
  json index = {
      {"schemaVersion", 2}, {"mediaType", registry::kOciIndex}, {"manifests", json::array()}};
  Result<registry::ManifestResponse> old = client.GetManifest(repo, tag);
  if (old.ok()) {
    json doc = json::parse(old->bytes, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("manifests") && doc["manifests"].is_array()) {
      for (const json& m : doc["manifests"]) {
        // A registry's document: a field of the wrong type is kept, never thrown over.
        auto digest = m.is_object() ? m.find("digest") : m.end();
        if (m.is_object() && (digest == m.end() || *digest != artifact.at("digest"))) {
          index["manifests"].push_back(m);
        }
      }
    }
  } else if (old.status().code() != Code::kNotFound) {
    return old.status();
  }
  index["manifests"].push_back(artifact);
  return client.PutManifest(repo, tag, registry::kOciIndex, index.dump()).status();
}

// The shared blob of one layer: from the cache's documents, else the registry (verified).
Result<std::string> SharedBlob(registry::Client& client, cache::Cache& cache,
                               const registry::Reference& repo, const registry::Descriptor& d) {
  if (d.size > fs::kMaxSharedIndexBytes) {
    return Status::Corrupt("shared index " + d.digest + " is " + std::to_string(d.size) +
                           " bytes, above the limit");
  }
  if (Result<cache::Document> doc = cache.GetDocument(d.digest); doc.ok()) {
    return std::move(doc->bytes);
  }
  IMGFS_ASSIGN_OR_RETURN(std::string bytes,
                         client.GetBlobVerified(repo, d.digest, fs::kMaxSharedIndexBytes));
  if (Status s = cache.PutDocument(d.digest, fs::kSharedIndexMediaType, bytes); !s.ok()) {
    IMGFS_LOG(kWarning, "could not keep shared index " << d.digest << ": " << s.ToString());
  }
  return bytes;
}

// The artifact manifest to use for `image`: from the index it was resolved through (bound),
// else through referrers when trusted. "" when there is none.
Result<std::string> FindArtifact(registry::Client& client, const registry::ResolvedImage& image,
                                 const std::vector<std::string>& trust_from, bool* bound) {
  *bound = false;
  if (image.index) {
    Result<registry::ImageIndex> index = registry::ParseImageIndex(image.index->bytes);
    if (index.ok()) {
      for (const registry::Descriptor& d : index->manifests) {
        if (d.artifact_type == fs::kSharedIndexArtifactType) {
          *bound = true;
          return d.digest;
        }
      }
    }
  }
  if (!TrustsIndexesFrom(trust_from, image.ref)) return std::string();
  IMGFS_ASSIGN_OR_RETURN(
      registry::Referrers found,
      client.ListReferrers(image.ref, image.manifest.digest, fs::kSharedIndexArtifactType));
  // The newest is added last to the tag schema's index.
  if (found.manifests.empty()) return std::string();
  return found.manifests.back().digest;
}

}  // namespace

bool TrustsIndexesFrom(const std::vector<std::string>& trust_from, const registry::Reference& ref) {
  const std::string repo = ref.domain + "/" + ref.repository;
  for (std::string entry : trust_from) {
    while (!entry.empty() && entry.back() == '/') entry.pop_back();
    if (entry.empty()) continue;
    if (entry == ref.domain || entry == repo) return true;
    if (repo.size() > entry.size() && repo.compare(0, entry.size(), entry) == 0 &&
        repo[entry.size()] == '/' && entry.find('/') != std::string::npos) {
      return true;
    }
  }
  return false;
}

Result<PushedIndexes> PushSharedIndexes(registry::Client& client,
                                        const registry::ResolvedImage& image, cache::Cache& cache) {
  const registry::Reference& repo = image.ref;
  json layers = json::array();
  for (const registry::Descriptor& layer : image.parsed.layers) {
    Result<std::string> serialized = cache.GetLayerIndex(layer.digest);
    if (!serialized.ok()) continue;
    Result<fs::LayerIndex> index = fs::LayerIndex::Deserialize(*serialized);
    if (!index.ok() || (index->format != "gzip" && index->format != "tar")) continue;
    Result<std::string> blob = fs::EncodeSharedIndex(*index);
    if (!blob.ok()) {
      IMGFS_LOG(kWarning, "layer " << layer.digest << " not shared: " << blob.status().ToString());
      continue;
    }
    IMGFS_ASSIGN_OR_RETURN(std::string digest, client.PushBlob(repo, *blob));
    json d = DescriptorJson(fs::kSharedIndexMediaType, digest, blob->size());
    d["annotations"] = {{std::string(fs::kSharedIndexLayerAnnotation), layer.digest}};
    layers.push_back(std::move(d));
  }
  if (layers.empty()) {
    return Status::NotFound("the cache holds no gzip or tar layer index of " + repo.String() +
                            ": mount or pull it first");
  }
  IMGFS_ASSIGN_OR_RETURN(std::string empty_digest, client.PushBlob(repo, kEmptyJson));
  json config = DescriptorJson(kEmptyMediaType, empty_digest, kEmptyJson.size());
  config["data"] = "e30=";  // base64 of "{}"
  const std::string subject_type = image.manifest.media_type.empty()
                                       ? std::string(registry::kOciManifest)
                                       : image.manifest.media_type;
  json manifest = {
      {"schemaVersion", 2},
      {"mediaType", registry::kOciManifest},
      {"artifactType", fs::kSharedIndexArtifactType},
      {"config", config},
      {"layers", layers},
      {"subject", DescriptorJson(subject_type, image.manifest.digest, image.manifest.bytes.size())},
  };
  const std::string bytes = manifest.dump();
  PushedIndexes out;
  out.layers = layers.size();
  IMGFS_ASSIGN_OR_RETURN(out.artifact.digest, client.PutManifest(repo, Sha256Digest(bytes),
                                                                 registry::kOciManifest, bytes));
  out.artifact.media_type = registry::kOciManifest;
  out.artifact.size = bytes.size();
  out.artifact.artifact_type = fs::kSharedIndexArtifactType;
  // A registry with the referrers API indexes the subject itself; otherwise the tag schema.
  IMGFS_ASSIGN_OR_RETURN(registry::Referrers referrers,
                         client.ListReferrers(repo, image.manifest.digest));
  if (!referrers.from_api) {
    json entry = DescriptorJson(registry::kOciManifest, out.artifact.digest, bytes.size());
    entry["artifactType"] = fs::kSharedIndexArtifactType;
    IMGFS_RETURN_IF_ERROR(AddToReferrersTag(client, repo, image.manifest.digest, entry)
                              .WithContext("the referrers tag of " + image.manifest.digest));
    out.tag_schema = true;
  }
  return out;
}

Result<std::string> ConvertImage(registry::Client& client, const registry::ResolvedImage& image,
                                 cache::Cache& cache, const std::string& new_tag) {
  IMGFS_ASSIGN_OR_RETURN(PushedIndexes pushed, PushSharedIndexes(client, image, cache));
  const std::string image_type = image.manifest.media_type.empty()
                                     ? std::string(registry::kOciManifest)
                                     : image.manifest.media_type;
  json platform = {{"os", image.platform.os}, {"architecture", image.platform.architecture}};
  if (!image.platform.variant.empty()) platform["variant"] = image.platform.variant;
  json image_entry = DescriptorJson(image_type, image.manifest.digest, image.manifest.bytes.size());
  image_entry["platform"] = platform;
  json artifact_entry = DescriptorJson(registry::kOciManifest, pushed.artifact.digest,
                                       pushed.artifact.size);
  artifact_entry["artifactType"] = fs::kSharedIndexArtifactType;
  json index = {{"schemaVersion", 2},
                {"mediaType", registry::kOciIndex},
                {"manifests", json::array({image_entry, artifact_entry})}};
  return client.PutManifest(image.ref, new_tag, registry::kOciIndex, index.dump());
}

FoundIndexes FindSharedIndexes(registry::Client& client, const registry::ResolvedImage& image,
                               cache::Cache& cache, const std::vector<std::string>& trust_from,
                               const std::vector<std::shared_ptr<const fs::LayerIndex>>* cached) {
  const size_t n = image.parsed.layers.size();
  FoundIndexes out;
  out.layers.resize(n);
  out.borrowed.resize(n);
  std::vector<size_t> wanted;
  for (size_t i = 0; i < n; ++i) {
    const registry::Descriptor& d = image.parsed.layers[i];
    const bool loaded = cached != nullptr && i < cached->size() && (*cached)[i];
    if (IsZstdLayer(d) || loaded || cache.GetLayerIndex(d.digest).ok()) continue;  // own first
    wanted.push_back(i);
  }
  if (wanted.empty()) return out;
  bool bound = false;
  Result<std::string> artifact = FindArtifact(client, image, trust_from, &bound);
  if (!artifact.ok()) {
    IMGFS_LOG(kWarning,
              "no shared index for " << image.ref.String() << ": " << artifact.status().ToString());
    return out;
  }
  if (artifact->empty()) return out;
  Result<registry::ManifestResponse> m = client.GetManifest(image.ref, *artifact);
  Result<registry::ImageManifest> parsed = m.ok() ? registry::ParseImageManifest(m->bytes)
                                                  : Result<registry::ImageManifest>(m.status());
  if (parsed.ok() && (parsed->artifact_type != fs::kSharedIndexArtifactType || !parsed->subject ||
                      parsed->subject->digest != image.manifest.digest)) {
    parsed = Status::Corrupt("it is not a layer index artifact of " + image.manifest.digest);
  }
  if (!parsed.ok()) {
    IMGFS_LOG(kWarning, "shared index " << *artifact << " of " << image.ref.String()
                                        << " not used: " << parsed.status().ToString());
    return out;
  }
  for (const registry::Descriptor& d : parsed->layers) {
    auto ann = d.annotations.find(std::string(fs::kSharedIndexLayerAnnotation));
    if (d.media_type != fs::kSharedIndexMediaType || ann == d.annotations.end()) continue;
    for (size_t i : wanted) {
      const registry::Descriptor& layer = image.parsed.layers[i];
      if (layer.digest != ann->second || out.layers[i]) continue;
      Result<std::string> blob = SharedBlob(client, cache, image.ref, d);
      Result<fs::LayerIndex> index = blob.ok()
                                         ? fs::DecodeSharedIndex(
                                               *blob,
                                               ToLayerDescriptor(layer, i < image.diff_ids.size()
                                                                            ? image.diff_ids[i]
                                                                            : std::string()))
                                         : Result<fs::LayerIndex>(blob.status());
      if (!index.ok()) {
        IMGFS_LOG(kWarning, "layer " << layer.digest << ": shared index " << d.digest
                                     << " not used: " << index.status().ToString());
        continue;
      }
      out.layers[i] = std::make_shared<const fs::LayerIndex>(std::move(index).value());
      out.borrowed[i] = !bound;
      out.artifact = *artifact;
      IMGFS_LOG(kInfo, "layer " << layer.digest << ": mounted lazily with the shared index in "
                                << *artifact
                                << (bound ? " (bound by the image index)" : " (from referrers)"));
    }
  }
  return out;
}

}  // namespace imgfs::cli
