#include "nifti_fast.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gzip_codec.h"

namespace itkit::pipeline {
namespace {

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

struct Header {
  int16_t dim[8];
  int16_t datatype, bitpix;
  float vox_offset, scl_slope, scl_inter;
};

// The first 348 bytes, through zlib's stream reader for .nii.gz (cheap: a few KB).
Result<bool> ReadHeader(const std::string& path, bool gz, Header* h) {
  unsigned char b[348];
  int got = 0;
  if (gz) {
    gzFile f = gzopen(path.c_str(), "rb");
    if (f == nullptr) return IoError(path, ": cannot open");
    got = gzread(f, b, sizeof(b));
    gzclose(f);
  } else {
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char*>(b), sizeof(b));
    got = static_cast<int>(f.gcount());
  }
  if (got != static_cast<int>(sizeof(b))) return InvalidArgument(path, ": NIfTI header is truncated");
  int32_t sizeof_hdr;
  std::memcpy(&sizeof_hdr, b, 4);
  if (sizeof_hdr != 348 || std::memcmp(b + 344, "n+1", 4) != 0) return false;  // swapped / pair / NIfTI-2
  std::memcpy(h->dim, b + 40, sizeof(h->dim));
  std::memcpy(&h->datatype, b + 70, 2);
  std::memcpy(&h->bitpix, b + 72, 2);
  std::memcpy(&h->vox_offset, b + 108, 4);
  std::memcpy(&h->scl_slope, b + 112, 4);
  std::memcpy(&h->scl_inter, b + 116, 4);
  return true;
}

bool TypeOf(int16_t datatype, PixelType* t, int* bytes) {
  switch (datatype) {
    case 2: *t = PixelType::kU8; *bytes = 1; return true;
    case 256: *t = PixelType::kI8; *bytes = 1; return true;
    case 4: *t = PixelType::kI16; *bytes = 2; return true;
    case 512: *t = PixelType::kU16; *bytes = 2; return true;
    case 8: *t = PixelType::kI32; *bytes = 4; return true;
    case 768: *t = PixelType::kU32; *bytes = 4; return true;
    case 16: *t = PixelType::kF32; *bytes = 4; return true;
    case 64: *t = PixelType::kF64; *bytes = 8; return true;
    default: return false;
  }
}

}  // namespace

Result<bool> ReadNiftiVoxels(const std::string& path, const std::vector<int64_t>& size, Volume* v) {
  const bool gz = EndsWith(path, ".nii.gz");
  if (!gz && !EndsWith(path, ".nii")) return false;
  if (size.size() != 3) return false;
  Header h{};
  ITKIT_ASSIGN_OR_RETURN(bool ok, ReadHeader(path, gz, &h));
  if (!ok) return false;
  if (h.dim[0] < 3 || h.dim[0] > 7) return false;
  for (int i = 1; i <= 3; ++i)
    if (h.dim[i] != size[static_cast<size_t>(i - 1)]) return false;
  for (int i = 4; i <= h.dim[0]; ++i)
    if (h.dim[i] > 1) return false;
  PixelType type;
  int bytes;
  if (!TypeOf(h.datatype, &type, &bytes) || h.bitpix != 8 * bytes) return false;
  // ITK rescales when slope is non-zero and not the identity; leave that to it.
  if (h.scl_slope != 0 && (h.scl_slope != 1 || h.scl_inter != 0)) return false;
  const float off = h.vox_offset;
  if (!(off >= 352) || off != static_cast<float>(static_cast<int64_t>(off)) || off > 1e9) return false;
  const auto offset = static_cast<size_t>(off);
  if (offset % static_cast<size_t>(bytes) != 0) return false;  // keep voxels aligned
  const size_t data_bytes = static_cast<size_t>(size[0] * size[1] * size[2]) * static_cast<size_t>(bytes);

  if (!gz) {
    ITKIT_ASSIGN_OR_RETURN(Buffer<uint8_t> buf, Buffer<uint8_t>::Allocate(static_cast<int64_t>(data_bytes)));
    std::ifstream f(path, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(data_bytes));
    if (static_cast<size_t>(f.gcount()) != data_bytes)
      return InvalidArgument(path, ": truncated image data (", f.gcount(), " of ", data_bytes, " bytes)");
    v->type = type;
    v->data = buf.data();
    v->owner = buf.owner();
    v->channels = 1;
    return true;
  }
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) return IoError(path, ": ", ec.message());
  ITKIT_ASSIGN_OR_RETURN(Buffer<uint8_t> packed, Buffer<uint8_t>::Allocate(static_cast<int64_t>(file_size)));
  const size_t need = offset + data_bytes;
  ITKIT_ASSIGN_OR_RETURN(Buffer<uint8_t> buf, Buffer<uint8_t>::Allocate(static_cast<int64_t>(need)));
  Prefaulter prefault;  // both buffers' pages, while this thread reads and inflates
  prefault.Start({{packed.data(), static_cast<size_t>(file_size)}, {buf.data(), need}});
  {
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char*>(packed.data()), static_cast<std::streamsize>(file_size));
    if (static_cast<uintmax_t>(f.gcount()) != file_size) return IoError(path, ": read failed");
  }
  auto got = GunzipInto(packed.data(), file_size, buf.data(), need);
  if (!got.ok()) {
    if (got.status().code() == StatusCode::kResourceExhausted) return false;  // extra data: ITK decides
    return got.status().WithContext(path);
  }
  if (*got < need) return InvalidArgument(path, ": truncated image data (", *got, " of ", need, " bytes)");
  v->type = type;
  v->data = buf.data() + offset;
  v->owner = buf.owner();
  v->channels = 1;
  return true;
}

}  // namespace itkit::pipeline
