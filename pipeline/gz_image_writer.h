// .nii.gz and gzip-encoded .nrrd/.seg.nrrd output without ITK's writers doing the
// gzip: ITK 5.2 deflates through zlib's stream on one thread (seconds for an
// 80M-voxel label map; its NIfTI writer also ignores the level). ITK still writes the
// header (its geometry and metadata logic unchanged): it writes a one-slice image of
// the same geometry, whose header differs only in the slice count, which is patched;
// voxels are then deflated straight from memory, in parallel gzip members.
#pragma once

#include <functional>
#include <string>

#include "itkit/thread_pool.h"
#include "volume.h"

namespace itkit::pipeline {

// write(file, geometry) writes an uncompressed image of the first geometry.voxels()
// voxels in the format `file`'s extension names; called with one slice of `g` (or,
// for NIfTI, should the header not look as expected, with all of it).
using SliceWriteFn = std::function<Status(const std::string& file, const Geometry& geometry)>;

// `label_map`: the voxels are labels (uint8/uint16), which level 1 run-length codes.
Status WriteNiftiGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                    bool label_map, int level, ThreadPool* pool, const SliceWriteFn& write_nifti);

// The same for an attached NRRD (.nrrd, .seg.nrrd): ITK writes the one-slice template
// (header with the caller's key/value metadata, "encoding: raw"), whose text header
// is patched to all slices and "encoding: gzip" and followed by our gzip members.
// False (nothing written) when the template is not the simple layout expected.
Result<bool> WriteNrrdGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                         bool label_map, int level, ThreadPool* pool, const SliceWriteFn& write_nrrd);

}  // namespace itkit::pipeline
