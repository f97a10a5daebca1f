#include <sys/stat.h>

#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/image.h"

namespace imgfs::cli {

int RunCat(const FilesOptions& options) {
  auto target = ParseTarget(options.image, options.common);
  if (!target.ok()) return Fail(target.status());
  auto opened = OpenImage(*target, options.common);
  if (!opened.ok()) return Fail(opened.status());
  OpenedImage& image = **opened;
  auto ino = ResolvePath(*image.tree, options.path, /*follow_last=*/true);
  if (!ino.ok()) return Fail(ino.status());
  auto attr = image.tree->GetAttr(*ino);
  if (!attr.ok()) return Fail(attr.status());
  if (!S_ISREG(attr->mode)) {
    return Fail(Status::InvalidArgument(options.path + " is not a regular file in the image"));
  }
  Status s = ReadWholeFile(image, *ino, [](std::string_view bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) != bytes.size()) {
      return Status::IoError("writing to stdout failed");
    }
    return Status::Ok();
  });
  if (s.ok() && std::fflush(stdout) != 0) s = Status::IoError("writing to stdout failed");
  return s.ok() ? 0 : Fail(s.WithContext(options.path));
}

}  // namespace imgfs::cli
