// Image references as a user or a config file writes them (registry/reference.h).
// Invariants: errors are kInvalidArgument/kUnsupported; an accepted reference prints as a
// string that parses back to the same reference.
#include "registry/reference.h"

#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {
namespace {

void Run(std::string_view input) {
  (void)registry::IsLoopbackHost(input);
  auto ref = registry::Reference::Parse(input);
  if (!ref.ok()) {
    FUZZ_CHECK(ref.status().code() == Code::kInvalidArgument ||
                   ref.status().code() == Code::kUnsupported,
               ref.status().ToString());
    return;
  }
  const std::string full = ref->String();
  auto again = registry::Reference::Parse(full);
  FUZZ_CHECK(again.ok(), full + ": " + again.status().ToString());
  FUZZ_CHECK(*again == *ref, full + " parses to " + again->String());
  (void)ref->Repo();
  (void)ref->ApiHost();
  (void)ref->IsInsecureLoopback();
}

}  // namespace
}  // namespace imgfs::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  imgfs::fuzz::Run(imgfs::fuzz::AsView(data, size));
  return 0;
}
