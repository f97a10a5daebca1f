#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/image.h"

namespace imgfs::cli {
namespace {

// "drwxr-xr-x", as ls -l writes a mode.
std::string ModeString(uint32_t mode) {
  char type = '-';
  if (S_ISDIR(mode)) type = 'd';
  if (S_ISLNK(mode)) type = 'l';
  if (S_ISCHR(mode)) type = 'c';
  if (S_ISBLK(mode)) type = 'b';
  if (S_ISFIFO(mode)) type = 'p';
  if (S_ISSOCK(mode)) type = 's';
  std::string out(1, type);
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) out += (mode & (0400 >> i)) ? rwx[i] : '-';
  auto special = [&](size_t pos, uint32_t bit, char set, char unset) {
    if (mode & bit) out[pos] = out[pos] == 'x' ? set : unset;
  };
  special(3, S_ISUID, 's', 'S');
  special(6, S_ISGID, 's', 'S');
  special(9, S_ISVTX, 't', 'T');
  return out;
}

void PrintEntry(const fs::Tree& tree, const std::string& name, const fs::Tree::Attr& attr,
                bool long_format) {
  if (!long_format) {
    std::printf("%s\n", name.c_str());
    return;
  }
  char size[48];
  if (S_ISCHR(attr.mode) || S_ISBLK(attr.mode)) {
    std::snprintf(size, sizeof size, "%u, %u", major(attr.rdev), minor(attr.rdev));
  } else {
    std::snprintf(size, sizeof size, "%llu", static_cast<unsigned long long>(attr.size));
  }
  std::string when = UtcMinute(attr.mtime_sec);
  std::string link;
  if (S_ISLNK(attr.mode)) {
    auto target = tree.ReadLink(attr.ino);
    link = " -> " + (target.ok() ? *target : std::string("?"));
  }
  std::printf("%s %3u %5u %5u %10s %s %s%s\n", ModeString(attr.mode).c_str(), attr.nlink, attr.uid,
              attr.gid, size, when.c_str(), name.c_str(), link.c_str());
}

// The children of directory `ino`, sorted by name, without "." and "..".
Result<std::vector<std::pair<std::string, fs::Tree::Attr>>> Children(const fs::Tree& tree,
                                                                     uint64_t ino) {
  std::vector<std::pair<std::string, fs::Tree::Attr>> out;
  IMGFS_RETURN_IF_ERROR(
      tree.ReadDir(ino, 0, [&](std::string_view name, const fs::Tree::Attr& a, uint64_t) {
        if (name != "." && name != "..") out.emplace_back(std::string(name), a);
        return true;
      }));
  return out;
}

// "/" + the path's components: how -R names what it lists.
std::string Normalized(std::string_view path) {
  std::string out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out += "/" + std::string(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

}  // namespace

int RunLs(const FilesOptions& options) {
  auto target = ParseTarget(options.image, options.common);
  if (!target.ok()) return Fail(target.status());
  auto opened = OpenImage(*target, options.common);
  if (!opened.ok()) return Fail(opened.status());
  const fs::Tree& tree = *(*opened)->tree;
  // ls -l shows a symlink itself; plain ls lists the directory it points to.
  auto ino = ResolvePath(tree, options.path, /*follow_last=*/!options.long_format);
  if (!ino.ok()) return Fail(ino.status());
  auto attr = tree.GetAttr(*ino);
  if (!attr.ok()) return Fail(attr.status());
  if (!S_ISDIR(attr->mode)) {
    PrintEntry(tree, options.path, *attr, options.long_format);
    return 0;
  }
  // Depth first, each directory's entries right after it, in name order: find's order over
  // sorted directories. Iterative (a stack of what is still to print): trees may be deep.
  std::vector<std::pair<std::string, fs::Tree::Attr>> todo;
  auto push_children = [&](uint64_t dir, const std::string& prefix) -> Status {
    IMGFS_ASSIGN_OR_RETURN(auto children, Children(tree, dir));
    for (auto it = children.rbegin(); it != children.rend(); ++it) {
      todo.emplace_back(options.recursive ? prefix + "/" + it->first : it->first, it->second);
    }
    return Status::Ok();
  };
  if (Status s = push_children(*ino, Normalized(options.path)); !s.ok()) return Fail(s);
  while (!todo.empty()) {
    auto [shown, a] = std::move(todo.back());
    todo.pop_back();
    PrintEntry(tree, shown, a, options.long_format);
    if (options.recursive && S_ISDIR(a.mode)) {
      if (Status s = push_children(a.ino, shown); !s.ok()) return Fail(s);
    }
  }
  return 0;
}

}  // namespace imgfs::cli
