// Image files in and out (ITK underneath, hidden behind this header): any scalar pixel
// type read as float, header checked before voxels are allocated.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "itkit/pipeline.h"
#include "itkit/thread_pool.h"
#include "volume.h"

namespace itkit::pipeline {

struct ReadOptions {
  int channels = 1;  // what the model takes: a 4D / vector image must match this
  int64_t max_voxels = kDefaultMaxVoxels;
};

// A file (NIfTI, NRRD, MetaImage, anything ITK reads) or a DICOM series folder.
// The result has `channels` channels; a 4th dimension or pixel components become them.
Result<Volume> ReadVolume(const std::string& path, const ReadOptions& options);

using MetaData = std::vector<std::pair<std::string, std::string>>;

// Writes a label map (uint8 or uint16 voxels, x fastest) with the geometry `g`; the
// format follows the extension. `metadata` goes into the file's key/value header
// where the format has one (NRRD), `compression_level` 0 = uncompressed.
// `pool` deflates .nii.gz in parallel.
template <typename T>
Status WriteLabelImage(const std::string& path, const Geometry& g, const T* labels,
                       const MetaData& metadata, int compression_level, ThreadPool* pool = nullptr);
// Writes a vector image (e.g. class probabilities) from `components` planes of
// g.voxels() floats each.
Status WriteVectorImage(const std::string& path, const Geometry& g, const float* planes,
                        int components, int compression_level, ThreadPool* pool = nullptr);

// True when `path` names something ITK can write (by extension).
bool IsWritableImagePath(const std::string& path);

// Called once before any ITK IO: registers the file formats we read and write
// explicitly instead of relying on ITK's factory auto-registration.
void RegisterImageIOs();

}  // namespace itkit::pipeline
