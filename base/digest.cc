#include "base/digest.h"

#include <array>
#include <cstdint>

#include <openssl/evp.h>

namespace imgfs {

Status ValidateDigest(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.substr(0, kPrefix.size()) != kPrefix) {
    auto colon = digest.find(':');
    if (colon != std::string_view::npos && colon > 0) {
      return Status::Unsupported("digest algorithm '" + std::string(digest.substr(0, colon)) +
                                 "' is not supported (only sha256)");
    }
    return Status::InvalidArgument("'" + std::string(digest) +
                                   "' is not a digest (sha256:<64 hex>)");
  }
  std::string_view hex = digest.substr(kPrefix.size());
  if (hex.size() != 64) {
    return Status::InvalidArgument("digest '" + std::string(digest) +
                                   "' must have 64 hex characters");
  }
  // Without a branch per character: a mount validates the digest of every chunk of every
  // layer index it loads (tens of thousands), and the early-exit loop was ~5% of a warm mount.
  static constexpr std::array<uint8_t, 256> kLowerHex = [] {
    std::array<uint8_t, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = 1;
    for (int c = 'a'; c <= 'f'; ++c) t[c] = 1;
    return t;
  }();
  uint8_t all = 1;
  for (char c : hex) all &= kLowerHex[static_cast<uint8_t>(c)];
  if (!all) {
    return Status::InvalidArgument("digest '" + std::string(digest) +
                                   "' has a character that is not lowercase hex");
  }
  return Status::Ok();
}

std::string_view DigestHex(std::string_view digest) { return digest.substr(7); }

struct Sha256::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr);
}
Sha256::~Sha256() = default;

void Sha256::Update(std::string_view bytes) { Update(bytes.data(), bytes.size()); }
void Sha256::Update(const void* data, size_t len) { EVP_DigestUpdate(impl_->ctx, data, len); }

std::string Sha256::FinishDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

std::string Sha256Digest(std::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.FinishDigest();
}

}  // namespace imgfs
