// DICOM series given as a folder (GDCM through ITK). Called by image_io.cpp inside its
// exception guard.
#pragma once

#include <string>

#include "image_io.h"

namespace itkit::pipeline {

// The series with the most files in `folder` (others are ignored, with a log line).
Result<Volume> ReadDicomSeries(const std::string& folder, const ReadOptions& options);
Result<ImageHeader> ReadDicomSeriesHeader(const std::string& folder, int64_t max_voxels);

}  // namespace itkit::pipeline
