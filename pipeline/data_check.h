// Checks, before ITK reads it, that an image file holds all the voxel data its header
// declares (for the formats whose ITK 5.2 readers do not fail on short data).
#pragma once

#include <cstdint>
#include <string>

#include "itkit/status.h"

namespace itkit::pipeline {

// `data_bytes`: what the reader will consume (ImageIOBase::GetImageSizeInBytes()).
Status CheckDataComplete(const std::string& path, uint64_t data_bytes);

}  // namespace itkit::pipeline
