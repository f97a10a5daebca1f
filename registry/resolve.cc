#include "registry/resolve.h"

#include <nlohmann/json.hpp>

namespace imgfs::registry {

std::optional<Platform> PlatformOfConfig(std::string_view config_bytes) {
  nlohmann::json doc = nlohmann::json::parse(config_bytes.begin(), config_bytes.end(), nullptr,
                                             /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  auto get = [&](const char* k) {
    auto it = doc.find(k);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Platform p{get("os"), get("architecture"), get("variant")};
  if (p.os.empty() || p.architecture.empty()) return std::nullopt;
  return p;
}

Result<ManifestResponse> ClientManifestSource::GetManifest(const Reference& repo,
                                                           std::string_view tag_or_digest) {
  return client_->GetManifest(repo, tag_or_digest);
}

Result<std::string> ClientManifestSource::GetConfig(const Reference& repo,
                                                    const Descriptor& config) {
  if (config.size > kMaxConfigBytes) {
    return Status::Corrupt("config " + config.digest + " of " + repo.Repo() + " is " +
                           std::to_string(config.size) + " bytes; an image config is at most " +
                           std::to_string(kMaxConfigBytes >> 20) + " MiB");
  }
  IMGFS_ASSIGN_OR_RETURN(std::string bytes,
                         client_->GetBlobVerified(repo, config.digest, kMaxConfigBytes));
  if (bytes.size() != config.size) {
    return Status::DigestMismatch("config " + config.digest + " of " + repo.Repo() + " has " +
                                  std::to_string(bytes.size()) + " bytes, the manifest says " +
                                  std::to_string(config.size));
  }
  return bytes;
}

Result<ResolvedImage> Resolve(Client& client, const Reference& ref, const Platform& want) {
  ClientManifestSource source(&client);
  return Resolve(source, ref, want);
}

Result<ResolvedImage> Resolve(ManifestSource& source, const Reference& ref, const Platform& want) {
  ResolvedImage out;
  out.ref = ref;
  const std::string& target = ref.digest.empty() ? ref.tag : ref.digest;
  IMGFS_ASSIGN_OR_RETURN(ManifestResponse top, source.GetManifest(ref, target));
  Result<ManifestKind> kind = ClassifyManifest(top.bytes, top.media_type);
  if (!kind.ok()) return kind.status().WithContext(ref.String());

  std::optional<Platform> chosen;
  if (*kind == ManifestKind::kIndex) {
    Result<ImageIndex> index = ParseImageIndex(top.bytes);
    if (!index.ok()) return index.status().WithContext(ref.String());
    IMGFS_ASSIGN_OR_RETURN(Descriptor desc, SelectPlatform(*index, want, ref.String()));
    IMGFS_ASSIGN_OR_RETURN(ManifestResponse m, source.GetManifest(ref, desc.digest));
    if (desc.size != 0 && m.bytes.size() != desc.size) {
      return Status::Corrupt(ref.String() + ": manifest " + desc.digest + " is " +
                             std::to_string(m.bytes.size()) + " bytes, the index says " +
                             std::to_string(desc.size));
    }
    Result<ManifestKind> inner = ClassifyManifest(m.bytes, m.media_type);
    if (!inner.ok()) return inner.status().WithContext(ref.String());
    if (*inner != ManifestKind::kImage) {
      return Status::Unsupported(ref.String() + ": the index entry for " + want.String() +
                                 " is itself an index (nested indexes are not supported)");
    }
    chosen = desc.platform;
    out.index = std::move(top);
    out.manifest = std::move(m);
  } else {
    out.manifest = std::move(top);
  }

  Result<ImageManifest> parsed = ParseImageManifest(out.manifest.bytes);
  if (!parsed.ok()) return parsed.status().WithContext(ref.String());
  out.parsed = std::move(parsed).value();
  if (!IsImageConfigMediaType(out.parsed.config.media_type)) {
    return Status::Unsupported(ref.String() + " is not a container image (config media type '" +
                               out.parsed.config.media_type + "')");
  }
  IMGFS_ASSIGN_OR_RETURN(out.config, source.GetConfig(ref, out.parsed.config));
  Result<std::vector<std::string>> diff_ids = ParseConfigDiffIds(out.config);
  if (!diff_ids.ok()) {
    return diff_ids.status().WithContext(ref.String() + ": config " + out.parsed.config.digest);
  }
  if (diff_ids->size() != out.parsed.layers.size()) {
    return Status::Corrupt(ref.String() + ": config " + out.parsed.config.digest + " lists " +
                           std::to_string(diff_ids->size()) + " diff_ids for the manifest's " +
                           std::to_string(out.parsed.layers.size()) + " layers");
  }
  out.diff_ids = std::move(diff_ids).value();
  if (!chosen) chosen = PlatformOfConfig(out.config);
  out.platform = chosen ? *chosen : want;
  return out;
}

}  // namespace imgfs::registry
