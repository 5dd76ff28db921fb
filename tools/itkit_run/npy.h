// Reading and writing NumPy .npy files (format 1.0/2.0/3.0, little-endian,
// C order) for the command-line tools.
#pragma once

#include <string>

#include "itkit/tensor.h"

namespace itkit::npy {

Result<Tensor> Read(const std::string& path);
Status Write(const std::string& path, const Tensor& tensor);

}  // namespace itkit::npy
