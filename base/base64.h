// Standard base64 (RFC 4648, "+/" alphabet), as docker's config.json auth fields, eStargz TOC
// xattr values and libarchive's pax xattr records use it. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace imgfs {

// With "=" padding.
std::string EncodeBase64(std::string_view bytes);

// Accepts padded or unpadded input and trailing CR/LF (credential helpers print them);
// nullopt on any other character or an impossible length.
std::optional<std::string> DecodeBase64(std::string_view text);

}  // namespace imgfs
