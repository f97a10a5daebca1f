// Builds tar archives byte by byte for the tests of the tar reader and of hostile layers:
// headers in ustar, old GNU and V7 form (any field, any type flag, checksums right), PAX
// records and headers, padded data, the end blocks.
//
// Pure functions, safe from any thread; nothing is checked: writing broken archives on purpose
// is the point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace imgfs::test {

struct Hdr {
  std::string name;
  char type = '0';
  uint32_t mode = 0644;
  uint64_t uid = 1000, gid = 1000;
  int64_t mtime = 1700000000;
  std::string linkname;
  uint64_t size = 0;
  std::string prefix;
  uint32_t devmajor = 0, devminor = 0;
  enum Format { kUstar, kGnu, kV7 } format = kUstar;
  bool base256_uid = false;
};

// Octal number of `width` - 1 digits and a NUL at b[off].
void PutOctal(std::string& b, size_t off, size_t width, uint64_t v);
// `s` (cut to `width`) at b[off].
void PutStr(std::string& b, size_t off, size_t width, const std::string& s);
// Recomputes a 512-byte header's checksum after it was changed.
void SetChecksum(std::string& b);
// One 512-byte header block.
std::string Header(const Hdr& h);
// `data` padded with zeros to whole blocks.
std::string Padded(const std::string& data);
// PAX records ("LEN key=value\n") with their lengths right.
std::string PaxRecords(const std::vector<std::pair<std::string, std::string>>& kv);
// A PAX header of type `type` ('x' or 'g') with its records.
std::string PaxHeader(const std::vector<std::pair<std::string, std::string>>& kv, char type = 'x');
// A regular file member (header `h` with name, type '0' and size set) and its data.
std::string File(const std::string& name, const std::string& data, Hdr h = {});
// A GNU long name ('L') or long link ('K') header holding `value`.
std::string GnuLong(char type, const std::string& value);
// The two zero blocks that end an archive.
std::string End();

}  // namespace imgfs::test
