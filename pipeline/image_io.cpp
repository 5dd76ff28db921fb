// Image files through ITK: header first (size checked against the voxel limit before
// any voxel is allocated), then the voxels converted to float by ITK's reader.
#include "image_io.h"

#include <filesystem>
#include <mutex>
#include <string>

#include <itkGDCMImageIOFactory.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkImageIOFactory.h>
#include <itkMetaDataObject.h>
#include <itkMetaImageIOFactory.h>
#include <itkNiftiImageIOFactory.h>
#include <itkNrrdImageIO.h>
#include <itkNrrdImageIOFactory.h>
#include <itkVectorImage.h>

#include "data_check.h"
#include "gz_image_writer.h"
#include "nifti_fast.h"
#include "dicom_series.h"
#include "itkit/tensor.h"
#include "itk_bridge.h"

namespace itkit::pipeline {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<itk::ImageIOBase::Pointer> OpenImageIO(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFound(path, ": no such file");
  itk::ImageIOBase::Pointer io =
      itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::ReadMode);
  if (!io) return InvalidArgument(path, ": not an image format we read (NIfTI, NRRD, MetaImage, DICOM)");
  io->SetFileName(path);
  io->ReadImageInformation();
  return io;
}

Result<ImageHeader> HeaderOf(itk::ImageIOBase* io, const std::string& path, int64_t max_voxels) {
  ImageHeader h;
  h.dimension = static_cast<int>(io->GetNumberOfDimensions());
  h.components = static_cast<int>(io->GetNumberOfComponents());
  h.pixel_type = itk::ImageIOBase::GetComponentTypeAsString(io->GetComponentType());
  if (h.components > 1) h.pixel_type += "[" + std::to_string(h.components) + "]";
  if (h.dimension < 2 || h.dimension > 7)
    return InvalidArgument(path, ": ", h.dimension, "-dimensional image (expected 3D)");
  if (h.components < 1 || h.components > 4096)
    return InvalidArgument(path, ": ", h.components, " components per voxel");
  int64_t voxels = 1;
  for (int i = 0; i < h.dimension; ++i) {
    const auto d = static_cast<uint64_t>(io->GetDimensions(static_cast<unsigned>(i)));
    if (d == 0 || d > (uint64_t{1} << 40)) return InvalidArgument(path, ": axis ", i, " has size ", d);
    h.size.push_back(static_cast<int64_t>(d));
    // Checked so that a forged header cannot overflow the product.
    if (voxels > max_voxels / static_cast<int64_t>(d))
      return ResourceExhausted(path, ": image of ", ShapeToString(h.size), "... voxels exceeds the limit of ",
                               max_voxels, " voxels");
    voxels *= static_cast<int64_t>(d);
  }
  h.voxels = voxels;
  if (voxels > max_voxels / h.components)
    return ResourceExhausted(path, ": ", voxels, " voxels x ", h.components,
                             " components exceeds the limit of ", max_voxels, " voxels");
  return h;
}

// What ImageFileReader would give a 3D image, from the IO's header alone.
Geometry GeometryOfIO(itk::ImageIOBase* io) {
  Geometry g;
  const unsigned d = io->GetNumberOfDimensions();
  for (unsigned i = 0; i < 3; ++i) {
    g.size[i] = i < d ? static_cast<int64_t>(io->GetDimensions(i)) : 1;
    g.spacing[i] = i < d ? io->GetSpacing(i) : 1.0;
    g.origin[i] = i < d ? io->GetOrigin(i) : 0.0;
    const std::vector<double> axis = i < d ? io->GetDirection(i) : std::vector<double>{};
    for (unsigned r = 0; r < 3; ++r)
      g.direction[r * 3 + i] = r < axis.size() ? axis[r] : (r == i ? 1.0 : 0.0);
    if (g.spacing[i] < 0) {  // as ImageFileReader: negative spacing flips the axis
      g.spacing[i] = -g.spacing[i];
      for (unsigned r = 0; r < 3; ++r) g.direction[r * 3 + i] = -g.direction[r * 3 + i];
    }
  }
  return g;
}

template <typename ImageType>
Result<typename ImageType::Pointer> ReadWith(itk::ImageIOBase* io, const std::string& path) {
  auto reader = itk::ImageFileReader<ImageType>::New();
  reader->SetFileName(path);
  reader->SetImageIO(io);
  reader->Update();
  typename ImageType::Pointer image = reader->GetOutput();
  image->DisconnectPipeline();
  return image;
}

// Keeps the ITK image alive as the owner of its float buffer (no copy).
template <typename ImagePointer>
void Adopt(ImagePointer image, Volume* v) {
  v->type = PixelType::kF32;
  v->data = image->GetBufferPointer();
  v->owner = std::make_shared<ImagePointer>(std::move(image));
}

Result<Volume> ReadFile(const std::string& path, const ReadOptions& options) {
  ITKIT_ASSIGN_OR_RETURN(itk::ImageIOBase::Pointer io, OpenImageIO(path));
  ITKIT_ASSIGN_OR_RETURN(ImageHeader h, HeaderOf(io.GetPointer(), path, options.max_voxels));
  const auto check_data = [&] { return CheckDataComplete(path, static_cast<uint64_t>(io->GetImageSizeInBytes())); };
  for (int i = 4; i < h.dimension; ++i)
    if (h.size[static_cast<size_t>(i)] != 1)
      return InvalidArgument(path, ": ", h.dimension, "-dimensional image ", ShapeToString(h.size),
                             " (expected 3D, or 4D with one volume per input channel)");
  const int64_t t = h.dimension >= 4 ? h.size[3] : 1;
  Volume v;
  if (h.components > 1) {
    if (t > 1) return InvalidArgument(path, ": 4D image with vector voxels is not supported");
    if (h.components != options.channels)
      return InvalidArgument(path, ": vector image with ", h.components,
                             " components per voxel, but the model takes ", options.channels,
                             " input channel(s)");
    using Img = itk::VectorImage<float, 3>;
    ITKIT_RETURN_IF_ERROR(check_data());
    ITKIT_ASSIGN_OR_RETURN(Img::Pointer img, ReadWith<Img>(io.GetPointer(), path));
    v.geometry = GeometryOf(img.GetPointer());
    v.channels = h.components;
    const int64_t n = v.geometry.voxels();
    ITKIT_ASSIGN_OR_RETURN(Buffer<float> planes, Buffer<float>::Allocate(n * v.channels));
    const float* src = img->GetBufferPointer();
    // Interleaved (x, c) → channel-major planes.
    for (int c = 0; c < v.channels; ++c) {
      float* dst = planes.data() + c * n;
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i * v.channels + c];
    }
    v.data = planes.data();
    v.owner = planes.owner();
  } else if (t > 1) {
    if (t != options.channels)
      return InvalidArgument(path, ": 4D image with ", t, " volumes, but the model takes ",
                             options.channels, " input channel(s)");
    using Img = itk::Image<float, 4>;
    ITKIT_RETURN_IF_ERROR(check_data());
    ITKIT_ASSIGN_OR_RETURN(Img::Pointer img, ReadWith<Img>(io.GetPointer(), path));
    v.geometry = GeometryOf(img.GetPointer());
    v.channels = static_cast<int>(t);
    Adopt(img, &v);  // (t, z, y, x) = channel-major
  } else {
    if (options.channels != 1)
      return InvalidArgument(path, ": single-channel image, but the model takes ", options.channels,
                             " input channels (give a 4D or vector image)");
    // NIfTI without scaling: read and inflate it ourselves, voxels kept as stored.
    ITKIT_ASSIGN_OR_RETURN(bool fast, ReadNiftiVoxels(path, h.size, &v));
    if (fast) {
      v.geometry = GeometryOfIO(io.GetPointer());
    } else {
      using Img = itk::Image<float, 3>;
      ITKIT_RETURN_IF_ERROR(check_data());
      ITKIT_ASSIGN_OR_RETURN(Img::Pointer img, ReadWith<Img>(io.GetPointer(), path));
      v.geometry = GeometryOf(img.GetPointer());
      Adopt(img, &v);
    }
  }
  ITKIT_RETURN_IF_ERROR(CheckGeometry(v.geometry, path));
  return v;
}

template <typename ImageType>
Status Write(ImageType* image, const std::string& path, int compression_level) {
  auto writer = itk::ImageFileWriter<ImageType>::New();
  writer->SetFileName(path);
  writer->SetInput(image);
  // ".seg.nrrd" is NRRD to ITK too, but name the IO so the key/value header is ours.
  if (EndsWith(path, ".nrrd") || EndsWith(path, ".nhdr")) writer->SetImageIO(itk::NrrdImageIO::New());
  if (compression_level > 0) {
    writer->SetUseCompression(true);
    writer->SetCompressionLevel(compression_level);
  }
  writer->Update();
  return Status::Ok();
}

}  // namespace

void RegisterImageIOs() {
  static std::once_flag once;
  std::call_once(once, [] {
    itk::NiftiImageIOFactory::RegisterOneFactory();
    itk::NrrdImageIOFactory::RegisterOneFactory();
    itk::MetaImageIOFactory::RegisterOneFactory();
    itk::GDCMImageIOFactory::RegisterOneFactory();
  });
}

Result<Volume> ReadVolume(const std::string& path, const ReadOptions& options) {
  RegisterImageIOs();
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return ReadDicomSeries(path, options);
    return ReadFile(path, options);
  } catch (const itk::ExceptionObject& e) {
    return IoError(path, ": ", e.GetDescription());
  } catch (const std::bad_alloc&) {
    return OutOfMemory(path, ": out of memory while reading");
  } catch (const std::exception& e) {
    return IoError(path, ": ", e.what());
  }
}

Result<ImageHeader> ReadImageHeader(const std::string& path, int64_t max_voxels) {
  RegisterImageIOs();
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) return ReadDicomSeriesHeader(path, max_voxels);
    ITKIT_ASSIGN_OR_RETURN(itk::ImageIOBase::Pointer io, OpenImageIO(path));
    return HeaderOf(io.GetPointer(), path, max_voxels);
  } catch (const itk::ExceptionObject& e) {
    return InvalidArgument(path, ": ", e.GetDescription());
  } catch (const std::exception& e) {
    return InvalidArgument(path, ": ", e.what());
  }
}

bool IsWritableImagePath(const std::string& path) {
  RegisterImageIOs();
  try {
    return itk::ImageIOFactory::CreateImageIO(path.c_str(), itk::IOFileModeEnum::WriteMode) != nullptr;
  } catch (...) {
    return false;
  }
}

template <typename T>
Status WriteLabelImage(const std::string& path, const Geometry& g, const T* labels,
                       const MetaData& metadata, int compression_level, ThreadPool* pool) {
  RegisterImageIOs();
  if (!IsWritableImagePath(path)) return InvalidArgument(path, ": no image format for this file name");
  // Borrows the caller's buffer (ITK must not free it); `geometry` may cover only
  // the first slices (the NIfTI header trick).
  auto write = [&](const std::string& file, const Geometry& geometry, int level) -> Status {
    using Img = itk::Image<T, 3>;
    auto image = Img::New();
    SetGeometry(image.GetPointer(), geometry);
    image->GetPixelContainer()->SetImportPointer(const_cast<T*>(labels),
                                                 static_cast<itk::SizeValueType>(geometry.voxels()), false);
    for (const auto& [key, value] : metadata)
      itk::EncapsulateMetaData<std::string>(image->GetMetaDataDictionary(), key, value);
    return Write(image.GetPointer(), file, level);
  };
  try {
    auto write_uncompressed = [&](const std::string& file, const Geometry& geometry) { return write(file, geometry, 0); };
    if (EndsWith(path, ".nii.gz") && compression_level > 0)
      return WriteNiftiGz(path, g, labels, sizeof(T), true, compression_level, pool, write_uncompressed);
    if (EndsWith(path, ".nrrd") && compression_level > 0) {
      ITKIT_ASSIGN_OR_RETURN(bool written,
                             WriteNrrdGz(path, g, labels, sizeof(T), true, compression_level, pool, write_uncompressed));
      if (written) return Status::Ok();
    }
    return write(path, g, compression_level);
  } catch (const itk::ExceptionObject& e) {
    return IoError(path, ": ", e.GetDescription());
  } catch (const std::exception& e) {
    return IoError(path, ": ", e.what());
  }
}

template Status WriteLabelImage<uint8_t>(const std::string&, const Geometry&, const uint8_t*,
                                         const MetaData&, int, ThreadPool*);
template Status WriteLabelImage<uint16_t>(const std::string&, const Geometry&, const uint16_t*,
                                          const MetaData&, int, ThreadPool*);

Status WriteVectorImage(const std::string& path, const Geometry& g, const float* planes, int components,
                        int compression_level, ThreadPool* pool) {
  RegisterImageIOs();
  if (!IsWritableImagePath(path)) return InvalidArgument(path, ": no image format for this file name");
  const int64_t n = g.voxels();
  // ITK's vector image is interleaved (x, component); NIfTI stores it planar (the
  // components are its 5th dimension), which is what `planes` already is.
  Buffer<float> interleaved;
  auto write = [&](const std::string& file, const Geometry& geometry, int level) -> Status {
    if (interleaved.empty()) {
      ITKIT_ASSIGN_OR_RETURN(interleaved, Buffer<float>::Allocate(n * components));
      float* dst = interleaved.data();
      ParallelFor(pool, n, 1 << 14, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int c = 0; c < components; ++c) dst[i * components + c] = planes[c * n + i];
      });
    }
    using Img = itk::VectorImage<float, 3>;
    auto image = Img::New();
    SetGeometry(image.GetPointer(), geometry);
    image->SetNumberOfComponentsPerPixel(static_cast<unsigned>(components));
    image->GetPixelContainer()->SetImportPointer(
        interleaved.data(), static_cast<itk::SizeValueType>(geometry.voxels() * components), false);
    return Write(image.GetPointer(), file, level);
  };
  try {
    if (EndsWith(path, ".nii.gz") && compression_level > 0)
      return WriteNiftiGz(path, g, planes, sizeof(float) * static_cast<size_t>(components), false, compression_level,
                          pool, [&](const std::string& file, const Geometry& geometry) { return write(file, geometry, 0); });
    return write(path, g, compression_level);
  } catch (const itk::ExceptionObject& e) {
    return IoError(path, ": ", e.GetDescription());
  } catch (const std::exception& e) {
    return IoError(path, ": ", e.what());
  }
}

}  // namespace itkit::pipeline
