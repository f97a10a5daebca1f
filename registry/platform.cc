#include "registry/platform.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

#include "base/ascii.h"
#include "base/strings.h"

namespace imgfs::registry {
namespace {

bool IsName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

// containerd's normalizeArch.
void NormalizeArch(std::string* arch, std::string* variant) {
  if (!variant->empty() && std::isdigit(static_cast<unsigned char>((*variant)[0]))) {
    *variant = "v" + *variant;
  }
  if (*arch == "i386" || *arch == "i686") {
    *arch = "386";
    variant->clear();
  } else if (*arch == "x86_64" || *arch == "x86-64" || *arch == "amd64") {
    *arch = "amd64";
    if (*variant == "v1") variant->clear();
  } else if (*arch == "aarch64" || *arch == "arm64") {
    *arch = "arm64";
    if (*variant == "v8.0") *variant = "v8";
  } else if (*arch == "armhf") {
    *arch = "arm";
    *variant = "v7";
  } else if (*arch == "armel") {
    *arch = "arm";
    *variant = "v6";
  } else if (*arch == "arm") {
    if (variant->empty()) *variant = "v7";
  }
}

// The number of a "vN" variant, -1 when it is not of that form. "" counts as `empty_as`.
int VariantNumber(const std::string& v, int empty_as) {
  if (v.empty()) return empty_as;
  if (v.size() < 2 || v[0] != 'v') return -1;
  int n = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(v[i]))) return -1;
    n = n * 10 + (v[i] - '0');
    if (n > 1000) return -1;
  }
  return n;
}

}  // namespace

Result<Platform> Platform::Parse(std::string_view s) {
  std::string text = AsciiLower(s);
  std::vector<std::string> parts;
  for (std::string_view part : Split(text, '/')) parts.emplace_back(part);
  if (parts.size() < 2 || parts.size() > 3 ||
      !std::all_of(parts.begin(), parts.end(), [](const std::string& p) { return IsName(p); })) {
    return Status::InvalidArgument("invalid platform '" + std::string(s) +
                                   "': expected os/architecture[/variant], e.g. linux/amd64 or "
                                   "linux/arm64/v8");
  }
  Platform p;
  p.os = parts[0] == "macos" ? "darwin" : parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  NormalizeArch(&p.architecture, &p.variant);
  return p;
}

Platform Platform::Host() {
  Platform p;
  p.os = "linux";
  struct utsname u;
  std::string machine = uname(&u) == 0 ? AsciiLower(u.machine) : "";
  if (machine == "x86_64" || machine == "amd64") {
    p.architecture = "amd64";
  } else if (machine == "aarch64" || machine == "arm64") {
    p.architecture = "arm64";
    p.variant = "v8";
  } else if (machine.rfind("armv", 0) == 0 && machine.size() >= 5 &&
             std::isdigit(static_cast<unsigned char>(machine[4]))) {
    p.architecture = "arm";
    p.variant = std::string("v") + machine[4];  // armv7l, armv6l, armv5tel
  } else if (machine == "i386" || machine == "i486" || machine == "i586" || machine == "i686") {
    p.architecture = "386";
  } else if (machine == "ppc64le") {
    p.architecture = "ppc64le";
  } else if (machine == "s390x" || machine == "riscv64" || machine == "mips64" ||
             machine == "loongarch64") {
    p.architecture = machine;
  } else {
    p.architecture = machine.empty() ? "amd64" : machine;
  }
  return p;
}

std::string Platform::String() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

int PlatformMatch(const Platform& want_in, const Platform& have_in) {
  Platform want = want_in;
  Platform have = have_in;
  want.os = AsciiLower(want.os);
  have.os = AsciiLower(have.os);
  want.architecture = AsciiLower(want.architecture);
  have.architecture = AsciiLower(have.architecture);
  NormalizeArch(&want.architecture, &want.variant);
  NormalizeArch(&have.architecture, &have.variant);
  if (want.os != have.os || want.architecture != have.architecture) return 0;
  if (want.architecture == "arm64") {
    auto norm = [](const std::string& v) { return v.empty() ? std::string("v8") : v; };
    return norm(want.variant) == norm(have.variant) ? 1000 : 0;
  }
  if (want.variant == have.variant) return 1000;
  if (want.architecture == "arm" || want.architecture == "amd64") {
    // Older variants of the same architecture run, the closest first.
    int empty_as = want.architecture == "amd64" ? 1 : 7;
    int w = VariantNumber(want.variant, empty_as);
    int h = VariantNumber(have.variant, empty_as);
    if (w > 0 && h > 0 && h <= w) return 100 + h;
    return 0;
  }
  // An image that names no variant runs on any variant of its architecture.
  if (have.variant.empty()) return 50;
  return 0;
}

}  // namespace imgfs::registry
