// The invariants of a TOC read (eStargz and zstd:chunked share the TOC schema), for
// estargz_fuzz.cc and zstd_chunked_fuzz.cc: an error is an input error; an accepted TOC gives
// an index that passes ValidateLayerIndex, gives every unit at least one chunk check, survives
// a Serialize/Deserialize round trip, and whose chunk digests read back without a crash.
#pragma once

#include "fs/layer/toc.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {

inline void CheckToc(const Result<fs::LayerIndex>& toc) {
  if (!toc.ok()) {
    FUZZ_CHECK(IsInputError(toc.status()), toc.status().ToString());
    return;
  }
  Status valid = fs::ValidateLayerIndex(*toc);
  FUZZ_CHECK(valid.ok(), valid.ToString());
  auto back = fs::LayerIndex::Deserialize(toc->Serialize());
  FUZZ_CHECK(back.ok(), back.status().ToString());
  auto checks = fs::UnitChecks(*back);
  FUZZ_CHECK(checks.size() == back->units.size(), "one check list per unit");
  for (const auto& unit_checks : checks) FUZZ_CHECK(!unit_checks.empty(), "a unit without checks");
}

}  // namespace imgfs::fuzz
