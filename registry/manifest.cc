#include "registry/manifest.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "base/digest.h"

namespace imgfs::registry {

std::string BareContentType(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  return AsciiLower(t);
}

namespace {

using nlohmann::json;

bool IsIndexType(std::string_view t) { return t == kOciIndex || t == kDockerManifestList; }
bool IsManifestType(std::string_view t) { return t == kOciManifest || t == kDockerManifest; }
bool IsSchema1Type(std::string_view t) { return t == kDockerSchema1 || t == kDockerSchema1Signed; }

Result<json> ParseJsonObject(std::string_view bytes, std::string_view what) {
  json doc = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Status::Corrupt(std::string(what) + " is not valid JSON");
  if (!doc.is_object()) return Status::Corrupt(std::string(what) + " is not a JSON object");
  return doc;
}

Status StringMap(const json& obj, std::string_view where, std::map<std::string, std::string>* out) {
  if (!obj.is_object())
    return Status::Corrupt(std::string(where) + " must be an object of strings");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!it.value().is_string()) {
      return Status::Corrupt(std::string(where) + "[\"" + it.key() + "\"] must be a string");
    }
    (*out)[it.key()] = it.value().get<std::string>();
  }
  return Status::Ok();
}

Status OptionalString(const json& obj, const char* key, std::string_view where, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return Status::Ok();
  if (!it->is_string())
    return Status::Corrupt(std::string(where) + "." + key + " must be a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

Result<int> SchemaVersion(const json& doc, std::string_view what) {
  auto it = doc.find("schemaVersion");
  if (it == doc.end() || !it->is_number_integer()) {
    return Status::Corrupt(std::string(what) + " has no integer schemaVersion");
  }
  int64_t v = it->get<int64_t>();
  if (v != 2) {
    return Status::Corrupt(std::string(what) + " has schemaVersion " + std::to_string(v) +
                           ", expected 2");
  }
  return 2;
}

Result<Descriptor> ParseDescriptor(const json& j, const std::string& where) {
  if (!j.is_object()) return Status::Corrupt(where + " is not a JSON object");
  Descriptor d;
  auto mt = j.find("mediaType");
  if (mt == j.end() || !mt->is_string() || mt->get<std::string>().empty()) {
    return Status::Corrupt(where + " has no mediaType");
  }
  d.media_type = mt->get<std::string>();
  auto dg = j.find("digest");
  if (dg == j.end() || !dg->is_string()) return Status::Corrupt(where + " has no digest");
  d.digest = dg->get<std::string>();
  Status st = ValidateDigest(d.digest);
  if (!st.ok())
    return Status(st.code() == Code::kUnsupported ? Code::kUnsupported : Code::kCorrupt,
                  where + ": " + st.message());
  auto sz = j.find("size");
  if (sz == j.end()) return Status::Corrupt(where + " has no size");
  if (sz->is_number_unsigned()) {
    d.size = sz->get<uint64_t>();
  } else if (sz->is_number_integer() && sz->get<int64_t>() >= 0) {
    d.size = static_cast<uint64_t>(sz->get<int64_t>());
  } else {
    return Status::Corrupt(where + ".size must be a non-negative integer");
  }
  if (auto an = j.find("annotations"); an != j.end() && !an->is_null()) {
    IMGFS_RETURN_IF_ERROR(StringMap(*an, where + ".annotations", &d.annotations));
  }
  IMGFS_RETURN_IF_ERROR(OptionalString(j, "artifactType", where, &d.artifact_type));
  if (auto urls = j.find("urls"); urls != j.end() && !urls->is_null()) {
    if (!urls->is_array()) return Status::Corrupt(where + ".urls must be an array of strings");
    for (const json& u : *urls) {
      if (!u.is_string()) return Status::Corrupt(where + ".urls must be an array of strings");
      d.urls.push_back(u.get<std::string>());
    }
  }
  if (auto pl = j.find("platform"); pl != j.end() && !pl->is_null()) {
    if (!pl->is_object()) return Status::Corrupt(where + ".platform must be an object");
    Platform p;
    IMGFS_RETURN_IF_ERROR(OptionalString(*pl, "os", where + ".platform", &p.os));
    IMGFS_RETURN_IF_ERROR(
        OptionalString(*pl, "architecture", where + ".platform", &p.architecture));
    IMGFS_RETURN_IF_ERROR(OptionalString(*pl, "variant", where + ".platform", &p.variant));
    if (p.os.empty() || p.architecture.empty()) {
      return Status::Corrupt(where + ".platform needs os and architecture");
    }
    d.platform = std::move(p);
  }
  return d;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

bool IsAttestation(const Descriptor& d) {
  auto it = d.annotations.find("vnd.docker.reference.type");
  if (it != d.annotations.end() && it->second == "attestation-manifest") return true;
  return d.platform && d.platform->os == "unknown" && d.platform->architecture == "unknown";
}

}  // namespace

std::string ManifestAcceptHeader() {
  std::string s;
  for (std::string_view t : {kOciIndex, kDockerManifestList, kOciManifest, kDockerManifest,
                             kDockerSchema1Signed, kDockerSchema1}) {
    if (!s.empty()) s += ", ";
    s += t;
  }
  return s;
}

Result<ManifestKind> ClassifyManifest(std::string_view bytes, std::string_view content_type) {
  std::string header_type = BareContentType(content_type);
  if (IsSchema1Type(header_type)) {
    return Status::Unsupported("deprecated schema1 manifest, not supported: " + header_type +
                               " (push the image again with a current docker or skopeo)");
  }
  IMGFS_ASSIGN_OR_RETURN(json doc, ParseJsonObject(bytes, "manifest"));
  std::string body_type;
  if (auto mt = doc.find("mediaType"); mt != doc.end() && mt->is_string()) {
    body_type = mt->get<std::string>();
  }
  auto sv = doc.find("schemaVersion");
  if (IsSchema1Type(body_type) ||
      (sv != doc.end() && sv->is_number_integer() && sv->get<int64_t>() == 1)) {
    return Status::Unsupported("deprecated schema1 manifest, not supported: " +
                               (body_type.empty() ? std::string("schemaVersion 1") : body_type) +
                               " (push the image again with a current docker or skopeo)");
  }
  // The body is what was signed by its digest; the header is only a hint.
  for (const std::string& t : {body_type, header_type}) {
    if (IsIndexType(t)) return ManifestKind::kIndex;
    if (IsManifestType(t)) return ManifestKind::kImage;
  }
  if (doc.contains("manifests")) return ManifestKind::kIndex;
  if (doc.contains("config") && doc.contains("layers")) return ManifestKind::kImage;
  std::string named = !body_type.empty() ? body_type : header_type;
  return Status::Unsupported("unsupported manifest media type '" + named +
                             "' (expected an OCI or Docker image manifest or index)");
}

Result<ImageManifest> ParseImageManifest(std::string_view bytes) {
  IMGFS_ASSIGN_OR_RETURN(json doc, ParseJsonObject(bytes, "image manifest"));
  ImageManifest m;
  IMGFS_ASSIGN_OR_RETURN(m.schema_version, SchemaVersion(doc, "image manifest"));
  IMGFS_RETURN_IF_ERROR(OptionalString(doc, "mediaType", "image manifest", &m.media_type));
  if (!m.media_type.empty() && !IsManifestType(m.media_type)) {
    return Status::Corrupt("image manifest has mediaType '" + m.media_type +
                           "', not an image manifest type");
  }
  auto cfg = doc.find("config");
  if (cfg == doc.end()) return Status::Corrupt("image manifest has no config descriptor");
  IMGFS_ASSIGN_OR_RETURN(m.config, ParseDescriptor(*cfg, "image manifest config"));
  auto layers = doc.find("layers");
  if (layers == doc.end() || !layers->is_array()) {
    return Status::Corrupt("image manifest has no layers array");
  }
  if (layers->size() > kMaxImageLayers) {
    return Status::Unsupported("image manifest lists " + std::to_string(layers->size()) +
                               " layers; imgfs mounts images of at most " +
                               std::to_string(kMaxImageLayers));
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    IMGFS_ASSIGN_OR_RETURN(
        Descriptor d,
        ParseDescriptor((*layers)[i], "image manifest layers[" + std::to_string(i) + "]"));
    m.layers.push_back(std::move(d));
  }
  if (auto an = doc.find("annotations"); an != doc.end() && !an->is_null()) {
    IMGFS_RETURN_IF_ERROR(StringMap(*an, "image manifest annotations", &m.annotations));
  }
  IMGFS_RETURN_IF_ERROR(OptionalString(doc, "artifactType", "image manifest", &m.artifact_type));
  if (auto sub = doc.find("subject"); sub != doc.end() && !sub->is_null()) {
    IMGFS_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor(*sub, "image manifest subject"));
    m.subject = std::move(d);
  }
  return m;
}

Result<ImageIndex> ParseImageIndex(std::string_view bytes) {
  IMGFS_ASSIGN_OR_RETURN(json doc, ParseJsonObject(bytes, "image index"));
  ImageIndex index;
  IMGFS_ASSIGN_OR_RETURN(index.schema_version, SchemaVersion(doc, "image index"));
  IMGFS_RETURN_IF_ERROR(OptionalString(doc, "mediaType", "image index", &index.media_type));
  if (!index.media_type.empty() && !IsIndexType(index.media_type)) {
    return Status::Corrupt("image index has mediaType '" + index.media_type +
                           "', not an index or manifest list type");
  }
  auto list = doc.find("manifests");
  if (list == doc.end() || !list->is_array()) {
    return Status::Corrupt("image index has no manifests array");
  }
  for (size_t i = 0; i < list->size(); ++i) {
    IMGFS_ASSIGN_OR_RETURN(Descriptor d, ParseDescriptor((*list)[i], "image index manifests[" +
                                                                         std::to_string(i) + "]"));
    index.manifests.push_back(std::move(d));
  }
  return index;
}

Result<Descriptor> SelectPlatform(const ImageIndex& index, const Platform& want,
                                  std::string_view where) {
  const Descriptor* best = nullptr;
  int best_score = 0;
  std::vector<std::string> available;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform || IsAttestation(d)) continue;
    std::string name = d.platform->String();
    if (std::find(available.begin(), available.end(), name) == available.end()) {
      available.push_back(name);
    }
    int score = PlatformMatch(want, *d.platform);
    if (score > best_score) {
      best = &d;
      best_score = score;
    }
  }
  if (best == nullptr) {
    return Status::NotFound(
        "no image for platform " + want.String() + " in " + std::string(where) +
        "; available: " + (available.empty() ? std::string("none") : Join(available)));
  }
  return *best;
}

bool IsImageConfigMediaType(std::string_view media_type) {
  return media_type == kOciConfig || media_type == kDockerConfig;
}

Result<std::vector<std::string>> ParseConfigDiffIds(std::string_view config_bytes) {
  json doc = json::parse(config_bytes.begin(), config_bytes.end(), nullptr,
                         /*allow_exceptions=*/false);
  if (!doc.is_object()) return Status::Corrupt("the image config is not a JSON object");
  auto rootfs = doc.find("rootfs");
  if (rootfs == doc.end() || !rootfs->is_object()) {
    return Status::Corrupt("the image config has no rootfs");
  }
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) {
    return Status::Corrupt("the image config has no rootfs.diff_ids array");
  }
  std::vector<std::string> out;
  out.reserve(ids->size());
  for (size_t i = 0; i < ids->size(); ++i) {
    const json& id = (*ids)[i];
    std::string where = "the image config's rootfs.diff_ids[" + std::to_string(i) + "]";
    if (!id.is_string()) return Status::Corrupt(where + " is not a string");
    std::string value = id.get<std::string>();
    if (Status s = ValidateDigest(value); !s.ok()) {
      return Status::Corrupt(where + ": " + s.message());
    }
    out.push_back(std::move(value));
  }
  return out;
}

}  // namespace imgfs::registry
