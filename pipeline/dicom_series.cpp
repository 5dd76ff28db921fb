// A DICOM folder → one float volume. GDCM sorts the slices along the slice normal
// and applies rescale slope/intercept; we check the series size before reading.
#include "dicom_series.h"

#include <itkGDCMImageIO.h>
#include <itkGDCMSeriesFileNames.h>
#include <itkImageSeriesReader.h>

#include "itk_bridge.h"
#include "itkit/log.h"

namespace itkit::pipeline {
namespace {

struct Series {
  std::vector<std::string> files;
  itk::GDCMImageIO::Pointer io;
  ImageHeader header;
};

Result<Series> FindSeries(const std::string& folder, int64_t max_voxels) {
  auto names = itk::GDCMSeriesFileNames::New();
  // Series details split a SeriesInstanceUID by orientation/geometry, so one
  // volume never mixes slices of different stacks.
  names->SetUseSeriesDetails(true);
  names->SetDirectory(folder);
  const auto& uids = names->GetSeriesUIDs();
  if (uids.empty()) return InvalidArgument(folder, ": no DICOM image series in this folder");
  Series s;
  std::string chosen;
  for (const auto& uid : uids) {
    auto files = names->GetFileNames(uid);
    if (files.size() > s.files.size()) {
      s.files = files;
      chosen = uid;
    }
  }
  if (uids.size() > 1)
    LogWarning(folder, ": ", uids.size(), " DICOM series; reading the largest (", s.files.size(),
               " files, ", chosen, ")");
  s.io = itk::GDCMImageIO::New();
  s.io->SetFileName(s.files.front());
  s.io->ReadImageInformation();
  ImageHeader& h = s.header;
  h.dimension = 3;
  h.components = static_cast<int>(s.io->GetNumberOfComponents());
  h.pixel_type = itk::ImageIOBase::GetComponentTypeAsString(s.io->GetComponentType());
  const int64_t nx = static_cast<int64_t>(s.io->GetDimensions(0));
  const int64_t ny = static_cast<int64_t>(s.io->GetDimensions(1));
  // A single multi-frame file carries its own depth.
  const int64_t frames = s.io->GetNumberOfDimensions() > 2 ? static_cast<int64_t>(s.io->GetDimensions(2)) : 1;
  const int64_t nz = s.files.size() == 1 ? frames : static_cast<int64_t>(s.files.size());
  h.size = {nx, ny, nz};
  if (nx <= 0 || ny <= 0 || nz <= 0 || nx > (int64_t{1} << 20) || ny > (int64_t{1} << 20))
    return InvalidArgument(folder, ": DICOM series of size ", nx, "x", ny, "x", nz);
  if (nx * ny > max_voxels / nz || nx * ny * nz > max_voxels / std::max(1, h.components))
    return ResourceExhausted(folder, ": DICOM series of ", nx, "x", ny, "x", nz,
                             " voxels exceeds the limit of ", max_voxels, " voxels");
  h.voxels = nx * ny * nz;
  return s;
}

}  // namespace

Result<ImageHeader> ReadDicomSeriesHeader(const std::string& folder, int64_t max_voxels) {
  ITKIT_ASSIGN_OR_RETURN(Series s, FindSeries(folder, max_voxels));
  return s.header;
}

Result<Volume> ReadDicomSeries(const std::string& folder, const ReadOptions& options) {
  ITKIT_ASSIGN_OR_RETURN(Series s, FindSeries(folder, options.max_voxels));
  if (s.header.components != 1)
    return InvalidArgument(folder, ": DICOM series with ", s.header.components,
                           " components per pixel (colour) is not supported");
  if (options.channels != 1)
    return InvalidArgument(folder, ": a DICOM series has one channel, but the model takes ",
                           options.channels);
  using Img = itk::Image<float, 3>;
  auto reader = itk::ImageSeriesReader<Img>::New();
  reader->SetImageIO(s.io);
  reader->SetFileNames(s.files);
  reader->Update();
  Img::Pointer image = reader->GetOutput();
  image->DisconnectPipeline();
  Volume v;
  v.geometry = GeometryOf(image.GetPointer());
  ITKIT_RETURN_IF_ERROR(CheckGeometry(v.geometry, folder));
  v.type = PixelType::kF32;
  v.data = image->GetBufferPointer();
  v.owner = std::make_shared<Img::Pointer>(image);
  return v;
}

}  // namespace itkit::pipeline
