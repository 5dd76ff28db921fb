// Conversions between ITK images and the pipeline's Volume/Geometry. Only the
// pipeline's .cpp files that talk to ITK include this.
#pragma once

#include <cmath>
#include <string>

#include <itkImage.h>
#include <itkImageIOBase.h>

#include "itkit/pipeline.h"
#include "volume.h"

namespace itkit::pipeline {

// The spatial part (first three axes) of an ITK image's geometry.
template <typename ImageType>
Geometry GeometryOf(const ImageType* image) {
  constexpr unsigned D = ImageType::ImageDimension;
  Geometry g;
  const auto size = image->GetLargestPossibleRegion().GetSize();
  const auto& spacing = image->GetSpacing();
  const auto& origin = image->GetOrigin();
  const auto& dir = image->GetDirection();
  for (unsigned i = 0; i < 3; ++i) {
    g.size[i] = i < D ? static_cast<int64_t>(size[i]) : 1;
    g.spacing[i] = i < D ? spacing[i] : 1.0;
    g.origin[i] = i < D ? origin[i] : 0.0;
    for (unsigned j = 0; j < 3; ++j)
      g.direction[i * 3 + j] = (i < D && j < D) ? dir(i, j) : (i == j ? 1.0 : 0.0);
  }
  return g;
}

template <typename ImageType>
void SetGeometry(ImageType* image, const Geometry& g) {
  typename ImageType::RegionType region;
  typename ImageType::SizeType size;
  typename ImageType::SpacingType spacing;
  typename ImageType::PointType origin;
  typename ImageType::DirectionType dir;
  for (unsigned i = 0; i < 3; ++i) {
    size[i] = static_cast<itk::SizeValueType>(g.size[i]);
    spacing[i] = g.spacing[i];
    origin[i] = g.origin[i];
    for (unsigned j = 0; j < 3; ++j) dir(i, j) = g.direction[i * 3 + j];
  }
  region.SetSize(size);
  image->SetRegions(region);
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(dir);
}

// Checked header facts shared by file and DICOM readers.
inline Status CheckGeometry(const Geometry& g, const std::string& path) {
  for (int i = 0; i < 3; ++i) {
    if (g.size[i] <= 0) return InvalidArgument(path, ": image axis ", i, " has size ", g.size[i]);
    if (!(g.spacing[i] > 0) || !std::isfinite(g.spacing[i]))
      return InvalidArgument(path, ": spacing ", g.spacing[i], " on axis ", i, " is not positive");
    if (!std::isfinite(g.origin[i])) return InvalidArgument(path, ": origin is not finite");
  }
  for (double d : g.direction)
    if (!std::isfinite(d)) return InvalidArgument(path, ": direction matrix is not finite");
  return Status::Ok();
}

}  // namespace itkit::pipeline
