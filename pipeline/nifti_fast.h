// NIfTI voxels without ITK's reader: the file (inflated whole by libdeflate for
// .nii.gz) is kept as stored, so a 16-bit CT is neither widened to float nor read
// through zlib's slower stream. Geometry still comes from ITK's header parsing.
#pragma once

#include <string>
#include <vector>

#include "volume.h"

namespace itkit::pipeline {

// True (and v's type/data/owner set) when `path` is a single-file NIfTI-1 of `size`
// (3D, one component) whose voxels need no scaling; false when ITK must read it
// (scl_slope/scl_inter, byte-swapped, complex/RGB, more data than declared, ...).
// Truncated or corrupt data is an error.
Result<bool> ReadNiftiVoxels(const std::string& path, const std::vector<int64_t>& size, Volume* v);

}  // namespace itkit::pipeline
