// .nii.gz output without ITK's NIfTI writer doing the gzip: ITK 5.2's writer ignores
// the compression level and deflates through zlib's stream (seconds for an 80M-voxel
// label map). ITK still writes the header (its qform/sform logic unchanged): it
// writes a one-slice image of the same geometry, whose header differs only in
// dim[3], which is patched; voxels are then deflated straight from memory.
#pragma once

#include <functional>
#include <string>

#include "itkit/thread_pool.h"
#include "volume.h"

namespace itkit::pipeline {

// write_nifti(file, geometry) writes an uncompressed .nii of the first
// geometry.voxels() voxels; called with one slice of `g` (or, should the header not
// look as expected, with all of it, which is then read back).
using NiftiWriteFn = std::function<Status(const std::string& file, const Geometry& geometry)>;

// `label_map`: the voxels are labels (uint8/uint16), which level 1 run-length codes.
Status WriteNiftiGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                    bool label_map, int level, ThreadPool* pool, const NiftiWriteFn& write_nifti);

}  // namespace itkit::pipeline
