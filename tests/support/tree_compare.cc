#include "tests/support/tree_compare.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <sstream>

#include "tests/support/files.h"

namespace imgfs::test {
namespace {

struct Entry {
  struct stat st {};
  std::string link_target;
  std::map<std::string, std::string> xattrs;
  std::string error;  // lstat/readlink/listxattr failure, reported as a difference
};

using Tree = std::map<std::string, Entry>;  // relative path ("" is the root) -> entry

std::string Octal(unsigned v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0%o", v);
  return buf;
}

std::string TypeName(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "regular file";
    case S_IFDIR:
      return "directory";
    case S_IFLNK:
      return "symlink";
    case S_IFCHR:
      return "char device";
    case S_IFBLK:
      return "block device";
    case S_IFIFO:
      return "fifo";
    case S_IFSOCK:
      return "socket";
    default:
      return "unknown type";
  }
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return '"' + out + '"';
}

void ReadXattrs(const std::string& path, Entry& e) {
  ssize_t len = llistxattr(path.c_str(), nullptr, 0);
  if (len < 0) {
    if (errno != ENOTSUP) e.error = std::string("llistxattr: ") + strerror(errno);
    return;
  }
  std::string names(static_cast<size_t>(len), '\0');
  len = llistxattr(path.c_str(), names.data(), names.size());
  if (len < 0) {
    e.error = std::string("llistxattr: ") + strerror(errno);
    return;
  }
  names.resize(static_cast<size_t>(len));
  for (size_t pos = 0; pos < names.size();) {
    std::string name = names.c_str() + pos;
    pos += name.size() + 1;
    if (name.empty()) continue;
    ssize_t vlen = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    std::string value;
    if (vlen > 0) {
      value.resize(static_cast<size_t>(vlen));
      vlen = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    }
    if (vlen < 0) {
      e.error = "lgetxattr " + name + ": " + strerror(errno);
      continue;
    }
    value.resize(static_cast<size_t>(vlen));
    e.xattrs[name] = value;
  }
}

void Walk(const std::string& root, const std::string& rel, dev_t root_dev, Tree& tree) {
  std::string path = rel.empty() ? root : root + "/" + rel;
  Entry& e = tree[rel];
  if (lstat(path.c_str(), &e.st) != 0) {
    e.error = std::string("lstat: ") + strerror(errno);
    return;
  }
  if (S_ISLNK(e.st.st_mode)) {
    char buf[PATH_MAX + 1];
    ssize_t n = readlink(path.c_str(), buf, PATH_MAX);
    if (n < 0) {
      e.error = std::string("readlink: ") + strerror(errno);
    } else {
      e.link_target.assign(buf, static_cast<size_t>(n));
    }
  }
  ReadXattrs(path, e);
  if (!S_ISDIR(e.st.st_mode) || e.st.st_dev != root_dev) return;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) {
    e.error = std::string("opendir: ") + strerror(errno);
    return;
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* d = readdir(dir)) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  if (errno != 0) e.error = std::string("readdir: ") + strerror(errno);
  closedir(dir);
  for (const auto& name : names) Walk(root, rel.empty() ? name : rel + "/" + name, root_dev, tree);
}

Tree Scan(const std::string& root) {
  Tree tree;
  struct stat st;
  if (lstat(root.c_str(), &st) != 0) {
    tree[""].error = "cannot lstat root " + root + ": " + strerror(errno);
    return tree;
  }
  Walk(root, "", st.st_dev, tree);
  return tree;
}

class Reporter {
 public:
  Reporter(TreeDiff& diff, size_t max) : diff_(diff), max_(max) {}
  void Add(const std::string& path, const std::string& what) {
    ++diff_.total;
    if (diff_.differences.size() < max_) {
      diff_.differences.push_back((path.empty() ? std::string("/") : "/" + path) + ": " + what);
    }
  }

 private:
  TreeDiff& diff_;
  size_t max_;
};

void CompareEntry(const std::string& rel, const std::string& expected_root,
                  const std::string& actual_root, const Entry& want, const Entry& got,
                  const TreeCompareOptions& options, Reporter& report) {
  if (!want.error.empty()) report.Add(rel, "in the expected tree: " + want.error);
  if (!got.error.empty()) report.Add(rel, got.error);
  if (!want.error.empty() || !got.error.empty()) return;
  const struct stat& a = want.st;
  const struct stat& b = got.st;
  if ((a.st_mode & S_IFMT) != (b.st_mode & S_IFMT)) {
    report.Add(rel, "type: expected " + TypeName(a.st_mode) + ", got " + TypeName(b.st_mode));
    return;
  }
  bool is_root = rel.empty();
  // Linux ignores a symlink's permission bits (always 0777 via lstat); nothing to compare.
  if (!S_ISLNK(a.st_mode) && (a.st_mode & 07777) != (b.st_mode & 07777)) {
    report.Add(rel,
               "mode: expected " + Octal(a.st_mode & 07777) + ", got " + Octal(b.st_mode & 07777));
  }
  if (a.st_uid != b.st_uid || a.st_gid != b.st_gid) {
    report.Add(rel, "owner: expected " + std::to_string(a.st_uid) + ":" + std::to_string(a.st_gid) +
                        ", got " + std::to_string(b.st_uid) + ":" + std::to_string(b.st_gid));
  }
  if (!is_root) {
    if (a.st_mtim.tv_sec != b.st_mtim.tv_sec) {
      report.Add(rel, "mtime: expected " + std::to_string(a.st_mtim.tv_sec) + ", got " +
                          std::to_string(b.st_mtim.tv_sec));
    } else if (a.st_mtim.tv_nsec != 0 && b.st_mtim.tv_nsec != 0 &&
               a.st_mtim.tv_nsec != b.st_mtim.tv_nsec) {
      report.Add(rel, "mtime nanoseconds: expected " + std::to_string(a.st_mtim.tv_nsec) +
                          ", got " + std::to_string(b.st_mtim.tv_nsec));
    }
  }
  if (!S_ISDIR(a.st_mode) && a.st_nlink != b.st_nlink) {
    report.Add(rel, "link count: expected " + std::to_string(a.st_nlink) + ", got " +
                        std::to_string(b.st_nlink));
  }
  if ((S_ISREG(a.st_mode) || S_ISLNK(a.st_mode)) && a.st_size != b.st_size) {
    report.Add(rel, "size: expected " + std::to_string(a.st_size) + ", got " +
                        std::to_string(b.st_size));
  }
  if (S_ISLNK(a.st_mode) && want.link_target != got.link_target) {
    report.Add(rel, "symlink target: expected " + Printable(want.link_target) + ", got " +
                        Printable(got.link_target));
  }
  if ((S_ISCHR(a.st_mode) || S_ISBLK(a.st_mode)) && a.st_rdev != b.st_rdev) {
    report.Add(rel, "device: expected " + std::to_string(major(a.st_rdev)) + "," +
                        std::to_string(minor(a.st_rdev)) + ", got " +
                        std::to_string(major(b.st_rdev)) + "," + std::to_string(minor(b.st_rdev)));
  }
  for (const auto& [name, value] : want.xattrs) {
    auto it = got.xattrs.find(name);
    if (it == got.xattrs.end()) {
      report.Add(rel, "xattr " + name + " missing (expected " + Printable(value) + ")");
    } else if (it->second != value) {
      report.Add(rel, "xattr " + name + ": expected " + Printable(value) + ", got " +
                          Printable(it->second));
    }
  }
  for (const auto& [name, value] : got.xattrs) {
    if (!want.xattrs.count(name)) {
      report.Add(rel, "unexpected xattr " + name + " = " + Printable(value));
    }
  }
  if (options.compare_contents && S_ISREG(a.st_mode)) {
    auto want_sum = FileSha256(expected_root + "/" + rel);
    auto got_sum = FileSha256(actual_root + "/" + rel);
    if (!want_sum.ok()) {
      report.Add(rel, "in the expected tree: " + want_sum.status().message());
    } else if (!got_sum.ok()) {
      report.Add(rel, "content unreadable: " + got_sum.status().message());
    } else if (*want_sum != *got_sum) {
      report.Add(rel, "content: expected " + *want_sum + ", got " + *got_sum);
    }
  }
}

// Groups regular files by inode; returns path -> group id (the first path of its group) for
// files whose inode is shared by several paths of the tree.
std::map<std::string, std::string> HardLinkGroups(const Tree& tree) {
  std::map<std::pair<dev_t, ino_t>, std::vector<std::string>> by_inode;
  for (const auto& [rel, e] : tree) {
    if (e.error.empty() && S_ISREG(e.st.st_mode)) {
      by_inode[{e.st.st_dev, e.st.st_ino}].push_back(rel);
    }
  }
  std::map<std::string, std::string> group_of;
  for (const auto& [inode, paths] : by_inode) {
    if (paths.size() < 2) continue;
    for (const auto& p : paths) group_of[p] = paths.front();
  }
  return group_of;
}

}  // namespace

std::string TreeDiff::ToString() const {
  std::ostringstream out;
  for (const auto& d : differences) out << d << "\n";
  if (total > differences.size()) out << "... and " << (total - differences.size()) << " more\n";
  return out.str();
}

TreeDiff CompareTrees(const std::string& expected_root, const std::string& actual_root,
                      const TreeCompareOptions& options) {
  TreeDiff diff;
  Reporter report(diff, options.max_reported);
  Tree want = Scan(expected_root);
  Tree got = Scan(actual_root);
  diff.entries_compared = want.size();
  for (const auto& [rel, w] : want) {
    auto it = got.find(rel);
    if (it == got.end()) {
      report.Add(rel, "missing (expected " + TypeName(w.st.st_mode) + ")");
      continue;
    }
    CompareEntry(rel, expected_root, actual_root, w, it->second, options, report);
  }
  for (const auto& [rel, g] : got) {
    if (!want.count(rel)) report.Add(rel, "unexpected " + TypeName(g.st.st_mode));
  }
  // Hard links, both ways: same groups in the expected tree must be same groups here.
  std::map<std::string, std::string> want_groups = HardLinkGroups(want);
  std::map<std::string, std::string> got_groups = HardLinkGroups(got);
  std::set<std::string> paths;
  for (const auto& [p, g] : want_groups) paths.insert(p);
  for (const auto& [p, g] : got_groups) paths.insert(p);
  for (const auto& p : paths) {
    auto w = want_groups.find(p);
    auto g = got_groups.find(p);
    if (!got.count(p) || !want.count(p)) continue;  // already reported as missing/unexpected
    if (w != want_groups.end() && g == got_groups.end()) {
      report.Add(p, "hard link broken: should share an inode with /" + w->second);
    } else if (w == want_groups.end() && g != got_groups.end()) {
      report.Add(p, "unexpectedly shares an inode with /" + g->second);
    } else if (w != want_groups.end()) {
      // Same group here means: the representative's inode in `got` equals p's inode in `got`.
      const auto& rep = got.find(w->second);
      if (rep == got.end() || rep->second.st.st_ino != got.at(p).st.st_ino) {
        report.Add(p, "hard link broken: should share an inode with /" + w->second);
      } else {
        auto rep_group = want_groups.find(g->second);
        if (rep_group == want_groups.end() || rep_group->second != w->second) {
          report.Add(p, "unexpectedly shares an inode with /" + g->second);
        }
      }
    }
  }
  return diff;
}

}  // namespace imgfs::test
