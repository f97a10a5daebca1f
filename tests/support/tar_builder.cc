#include "tests/support/tar_builder.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace imgfs::test {

void PutOctal(std::string& b, size_t off, size_t width, uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(v));
  std::memcpy(&b[off], buf, width - 1);
  b[off + width - 1] = '\0';
}

void PutStr(std::string& b, size_t off, size_t width, const std::string& s) {
  std::memcpy(&b[off], s.data(), std::min(width, s.size()));
}

void SetChecksum(std::string& b) {
  std::memset(&b[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : b) sum += c;
  char buf[8];
  std::snprintf(buf, sizeof buf, "%06o", sum);
  std::memcpy(&b[148], buf, 7);  // 6 digits, NUL, then the space already there
}

std::string Header(const Hdr& h) {
  std::string b(512, '\0');
  PutStr(b, 0, 100, h.name);
  PutOctal(b, 100, 8, h.mode);
  if (h.base256_uid) {
    b[108] = static_cast<char>(0x80);
    uint64_t v = h.uid;
    for (int i = 7; i >= 1; --i, v >>= 8) b[108 + i] = static_cast<char>(v & 0xff);
  } else {
    PutOctal(b, 108, 8, h.uid);
  }
  PutOctal(b, 116, 8, h.gid);
  PutOctal(b, 124, 12, h.size);
  PutOctal(b, 136, 12, static_cast<uint64_t>(h.mtime));
  b[156] = h.type;
  PutStr(b, 157, 100, h.linkname);
  if (h.format == Hdr::kUstar) {
    std::memcpy(&b[257],
                "ustar\0"
                "00",
                8);
    PutStr(b, 345, 155, h.prefix);
  } else if (h.format == Hdr::kGnu) {
    std::memcpy(&b[257], "ustar  \0", 8);
  }
  if (h.format != Hdr::kV7) {
    PutStr(b, 265, 32, "user");
    PutStr(b, 297, 32, "group");
    PutOctal(b, 329, 8, h.devmajor);
    PutOctal(b, 337, 8, h.devminor);
  }
  SetChecksum(b);
  return b;
}

std::string Padded(const std::string& data) {
  std::string out = data;
  out.resize((data.size() + 511) / 512 * 512, '\0');
  return out;
}

std::string PaxRecords(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    size_t body = 1 + k.size() + 1 + v.size() + 1;
    size_t len = body + 1;
    while (std::to_string(len).size() + body != len) ++len;
    out += std::to_string(len) + " " + k + "=" + v + "\n";
  }
  return out;
}

std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& kv, char type) {
  std::string data = PaxRecords(kv);
  Hdr h;
  h.name = "PaxHeaders/x";
  h.type = type;
  h.size = data.size();
  return Header(h) + Padded(data);
}

std::string File(const std::string& name, const std::string& data, Hdr h) {
  h.name = name;
  h.type = '0';
  h.size = data.size();
  return Header(h) + Padded(data);
}

std::string GnuLong(char type, const std::string& value) {
  Hdr h;
  h.format = Hdr::kGnu;
  h.name = "././@LongLink";
  h.type = type;
  h.size = value.size() + 1;
  return Header(h) + Padded(value + '\0');
}

std::string End() { return std::string(1024, '\0'); }

}  // namespace imgfs::test
