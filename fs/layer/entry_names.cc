// The names of layer entries as every layer parser receives them from outside data: cleaning a
// tar member name into an Entry path, the kernel's limits on names and xattrs, and docker's
// whiteout conventions. Declared in layer_index.h (below "Limits on names from outside data"),
// apart from the index's own serialization and invariants in layer_index.cc.
#include "fs/layer/layer_index.h"

#include <string>
#include <string_view>
#include <vector>

#include "base/strings.h"

namespace imgfs::fs {

std::string AbbreviateName(std::string_view name) {
  constexpr size_t kShown = 80;
  if (name.size() <= kShown) return std::string(name);
  return std::string(name.substr(0, kShown)) + "... (" + std::to_string(name.size()) + " bytes)";
}

Result<std::string> CleanPath(std::string_view name) {
  bool rooted = !name.empty() && name[0] == '/';
  std::vector<std::string_view> parts;
  for (std::string_view part : Split(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) {
        parts.pop_back();
      } else if (!rooted) {
        return Status::Corrupt("tar member name '" + AbbreviateName(name) +
                               "' points outside the layer root");
      }
      continue;
    }
    if (part.find('\0') != std::string_view::npos) {
      return Status::Corrupt("tar member name '" + AbbreviateName(name) + "' contains a NUL byte");
    }
    parts.push_back(part);
  }
  std::string out;
  for (std::string_view part : parts) {
    if (!out.empty()) out.push_back('/');
    out.append(part);
  }
  IMGFS_RETURN_IF_ERROR(ValidateEntryName(out));
  return out;
}

Status ValidateEntryName(std::string_view path) {
  if (path.size() > kMaxPathLength) {
    return Status::Corrupt("name '" + AbbreviateName(path) + "' is longer than PATH_MAX (" +
                           std::to_string(kMaxPathLength) + " bytes)");
  }
  for (std::string_view part : Split(path, '/')) {
    if (part.size() > kMaxNameComponent) {
      return Status::Corrupt("name '" + AbbreviateName(path) + "' has a component of " +
                             std::to_string(part.size()) + " bytes, longer than NAME_MAX (" +
                             std::to_string(kMaxNameComponent) + ")");
    }
  }
  return Status::Ok();
}

Status ValidateXattrs(const Entry& entry) {
  if (entry.xattrs.empty()) return Status::Ok();
  auto fail = [&](const std::string& what) {
    return Status::Corrupt("entry '" + AbbreviateName(entry.path) + "': " + what);
  };
  if (entry.xattrs.size() > kMaxXattrsPerEntry) {
    return fail(std::to_string(entry.xattrs.size()) + " xattrs, more than the limit of " +
                std::to_string(kMaxXattrsPerEntry));
  }
  size_t list = 0, total = 0;
  for (const auto& [name, value] : entry.xattrs) {
    if (name.empty() || name.size() > kMaxXattrName) {
      return fail("xattr name '" + AbbreviateName(name) + "' is empty or longer than " +
                  std::to_string(kMaxXattrName) + " bytes");
    }
    if (value.size() > kMaxXattrValue) {
      return fail("xattr '" + name + "' has a value of " + std::to_string(value.size()) +
                  " bytes, more than " + std::to_string(kMaxXattrValue));
    }
    list += name.size() + 1;
    total += name.size() + value.size();
  }
  if (list > kMaxXattrNameList || total > kMaxXattrBytesPerEntry) {
    return fail("xattrs take " + std::to_string(total) + " bytes (" + std::to_string(list) +
                " for the names), more than the limits of " +
                std::to_string(kMaxXattrBytesPerEntry) + " (" + std::to_string(kMaxXattrNameList) +
                ")");
  }
  return Status::Ok();
}

bool ApplyWhiteoutName(Entry* entry) {
  constexpr std::string_view kPrefix = ".wh.";
  constexpr std::string_view kOpaque = ".wh..wh..opq";
  std::string& path = entry->path;
  size_t slash = path.rfind('/');
  size_t base_start = slash == std::string::npos ? 0 : slash + 1;
  std::string_view base = std::string_view(path).substr(base_start);
  if (base.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  if (base == kOpaque) {
    path = dir;
    entry->opaque = true;
    return true;
  }
  std::string_view name = base.substr(kPrefix.size());
  if (name.empty() || name == "." || name == "..") return false;
  path = dir.empty() ? std::string(name) : dir + "/" + std::string(name);
  entry->whiteout = true;
  return true;
}

bool IsDroppedName(std::string_view path) {
  constexpr std::string_view kMeta = ".wh..wh.";
  if (path.substr(0, kMeta.size()) == kMeta && path != ".wh..wh..opq") return true;
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  return base == ".wh." || base == ".wh.." || base == ".wh...";
}

}  // namespace imgfs::fs
