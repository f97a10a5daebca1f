#include "registry/auth.h"

#include <algorithm>
#include <cctype>

#include "base/ascii.h"

namespace imgfs::registry {
namespace {

bool IsTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~/").find(c) != std::string_view::npos;
}

}  // namespace

std::vector<AuthChallenge> ParseWwwAuthenticate(std::string_view h) {
  std::vector<AuthChallenge> out;
  size_t i = 0;
  const size_t n = h.size();
  auto skip_ws = [&] {
    while (i < n && (h[i] == ' ' || h[i] == '\t')) ++i;
  };
  auto read_token = [&] {
    size_t start = i;
    while (i < n && IsTokenChar(h[i])) ++i;
    return h.substr(start, i - start);
  };
  while (i < n) {
    while (i < n && (h[i] == ' ' || h[i] == '\t' || h[i] == ',')) ++i;
    if (i >= n) break;
    std::string_view scheme = read_token();
    if (scheme.empty()) {
      ++i;  // not a token: skip it rather than loop on it
      continue;
    }
    AuthChallenge challenge;
    challenge.scheme = AsciiLower(scheme);
    while (i < n) {
      skip_ws();
      size_t param_start = i;
      std::string_view name = read_token();
      skip_ws();
      if (name.empty() || i >= n || h[i] != '=') {
        i = param_start;  // the next challenge's scheme, or garbage
        break;
      }
      ++i;
      skip_ws();
      std::string value;
      if (i < n && h[i] == '"') {
        ++i;
        while (i < n && h[i] != '"') {
          if (h[i] == '\\' && i + 1 < n) ++i;
          value.push_back(h[i]);
          ++i;
        }
        if (i < n) ++i;  // closing quote
      } else {
        while (i < n && h[i] != ',' && h[i] != ' ' && h[i] != '\t') value.push_back(h[i++]);
      }
      challenge.params[AsciiLower(name)] = std::move(value);
      skip_ws();
      if (i < n && h[i] == ',') {
        ++i;
      } else {
        break;
      }
    }
    out.push_back(std::move(challenge));
    if (i < n && h[i] != ',' && h[i] != ' ' && h[i] != '\t' && !IsTokenChar(h[i])) ++i;
  }
  return out;
}

}  // namespace imgfs::registry
