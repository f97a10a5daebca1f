// The invariants of a TOC read (eStargz and zstd:chunked share the TOC schema), for
// estargz_fuzz.cc and zstd_chunked_fuzz.cc: an error is an input error; an accepted TOC gives
// an index that passes ValidateLayerIndex, has one check list per unit, survives a
// Serialize/Deserialize round trip, and whose chunk digests read back without a crash.
#pragma once

#include "fs/layer/estargz.h"
#include "tests/fuzz/fuzz_support.h"

namespace imgfs::fuzz {

inline void CheckToc(const Result<fs::TocLayerIndex>& toc) {
  if (!toc.ok()) {
    FUZZ_CHECK(IsInputError(toc.status()), toc.status().ToString());
    return;
  }
  Status valid = fs::ValidateLayerIndex(toc->index);
  FUZZ_CHECK(valid.ok(), valid.ToString());
  FUZZ_CHECK(toc->unit_checks.size() == toc->index.units.size(), "one check list per unit");
  auto back = fs::LayerIndex::Deserialize(toc->index.Serialize());
  FUZZ_CHECK(back.ok(), back.status().ToString());
  auto checks = fs::UnitChecksFromIndex(*back);
  if (!checks.ok()) FUZZ_CHECK(IsInputError(checks.status()), checks.status().ToString());
}

}  // namespace imgfs::fuzz
