// WWW-Authenticate header values as a registry sends them (registry/auth.h), and the base64
// of docker's config.json `auth` fields and credential helpers (base/base64.h).
// Invariants: schemes and parameter names come out lower case; decoded base64 encodes back
// to the canonical form of its input.
#include <cctype>

#include "base/base64.h"
#include "registry/auth.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

bool IsLower(std::string_view s) {
  for (char c : s) {
    if (std::isupper(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

void Run(std::string_view input) {
  for (const auto& challenge : registry::ParseWwwAuthenticate(input)) {
    FUZZ_CHECK(!challenge.scheme.empty() && IsLower(challenge.scheme), challenge.scheme);
    for (const auto& [name, value] : challenge.params) {
      FUZZ_CHECK(IsLower(name), name);
    }
  }
  if (auto decoded = DecodeBase64(input)) {
    auto round = DecodeBase64(EncodeBase64(*decoded));
    FUZZ_CHECK(round && *round == *decoded, "base64 round trip");
  }
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
