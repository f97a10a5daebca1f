// ASCII helpers for protocol text (header names, schemes, media types, platform names):
// case is folded byte by byte as in the "C" locale; other bytes are left as they are.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

namespace imgfs {

// `s` with A-Z turned into a-z.
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace imgfs
