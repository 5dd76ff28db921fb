// 3D Slicer's segmentation file (.seg.nrrd): a label map NRRD whose key/value header
// describes each segment (ID, name, colour, label value, layer, extent), so Slicer
// loads it as a segmentation node with the model's names and colours.
#pragma once

#include <string>
#include <vector>

#include "image_io.h"
#include "itkit/thread_pool.h"

namespace itkit::pipeline {

bool IsSegNrrdPath(const std::string& path);

// The header entries for classes 1..classes-1 (0 is background, not a segment).
template <typename T>
MetaData SegNrrdMetaData(const Geometry& g, const T* labels, int classes, const std::vector<LabelInfo>& info,
                         ThreadPool* pool);

}  // namespace itkit::pipeline
