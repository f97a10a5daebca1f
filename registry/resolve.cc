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

Result<ResolvedImage> Resolve(Client& client, const Reference& ref, const Platform& want) {
  ResolvedImage out;
  out.ref = ref;
  const std::string& target = ref.digest.empty() ? ref.tag : ref.digest;
  IMGFS_ASSIGN_OR_RETURN(ManifestResponse top, client.GetManifest(ref, target));
  Result<ManifestKind> kind = ClassifyManifest(top.bytes, top.media_type);
  if (!kind.ok()) return kind.status().WithContext(ref.String());

  std::optional<Platform> chosen;
  if (*kind == ManifestKind::kIndex) {
    Result<ImageIndex> index = ParseImageIndex(top.bytes);
    if (!index.ok()) return index.status().WithContext(ref.String());
    IMGFS_ASSIGN_OR_RETURN(Descriptor desc, SelectPlatform(*index, want, ref.String()));
    IMGFS_ASSIGN_OR_RETURN(ManifestResponse m, client.GetManifest(ref, desc.digest));
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
  if (!chosen) {
    Result<std::string> config = client.GetBlobVerified(ref, out.parsed.config.digest);
    if (!config.ok()) return config.status();
    chosen = PlatformOfConfig(*config);
  }
  out.platform = chosen ? *chosen : want;
  return out;
}

}  // namespace imgfs::registry
