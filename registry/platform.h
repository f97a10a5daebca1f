// Platform: the os/architecture[/variant] an image is built for, and how one is matched
// against what the user wants (containerd's rules, which docker uses).
//
// Parse and Host normalise the way containerd does: names are lower case, "x86_64" is amd64,
// "aarch64" is arm64, "armhf" is arm/v7, a bare variant number "7" is "v7".
// Matching (PlatformMatch): os and architecture equal; variants equal, except that arm64
// treats "" and "v8" alike, and a wanted arm or amd64 variant also accepts lower variants of
// the same architecture (an arm/v7 host runs arm/v6 images) with a lower preference.
//
// Thread-safety: value types and pure functions.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace imgfs::registry {

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", "arm", "s390x", ...
  std::string variant;       // "", "v7", "v8", ...

  // "linux/amd64", "linux/arm64/v8", "linux/arm/v7"; anything else is kInvalidArgument.
  static Result<Platform> Parse(std::string_view s);
  // The platform of the running machine, from uname(2): x86_64 -> linux/amd64,
  // aarch64 -> linux/arm64/v8, armv7l -> linux/arm/v7, ...
  static Platform Host();
  // "os/architecture" or "os/architecture/variant".
  std::string String() const;

  friend bool operator==(const Platform&, const Platform&) = default;
};

// How well an image for `have` suits a machine that wants `want`: 0 when it does not run
// there, higher is better (an exact match scores highest).
int PlatformMatch(const Platform& want, const Platform& have);

}  // namespace imgfs::registry
