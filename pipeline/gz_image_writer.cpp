#include "gz_image_writer.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gzip_codec.h"

namespace itkit::pipeline {
namespace {

Result<std::vector<uint8_t>> ReadFile(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return IoError(path, ": ", ec.message());
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<uintmax_t>(in.gcount()) != size) return IoError(path, ": short read");
  return bytes;
}

// The header (vox_offset bytes) of an ITK-written one-slice .nii, patched to `nz`
// slices; empty when it is not the plain little-endian NIfTI-1 header expected.
std::vector<uint8_t> PatchedHeader(const std::vector<uint8_t>& file, const Geometry& g, size_t slice_bytes) {
  if (file.size() < 352) return {};
  int32_t sizeof_hdr;
  int16_t dim[8];
  float vox_offset;
  std::memcpy(&sizeof_hdr, file.data(), 4);
  std::memcpy(dim, file.data() + 40, sizeof(dim));
  std::memcpy(&vox_offset, file.data() + 108, 4);
  const auto offset = static_cast<size_t>(vox_offset);
  if (sizeof_hdr != 348 || std::memcmp(file.data() + 344, "n+1", 4) != 0 || vox_offset < 352 ||
      static_cast<float>(offset) != vox_offset || file.size() != offset + slice_bytes || dim[0] < 3 ||
      dim[1] != g.size[0] || dim[2] != g.size[1] || dim[3] != 1 || g.size[2] > 32767)
    return {};
  std::vector<uint8_t> header(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(offset));
  const auto nz = static_cast<int16_t>(g.size[2]);
  std::memcpy(header.data() + 46, &nz, 2);  // dim[3]
  return header;
}

// The bytes `write` produces for `geometry` in a temporary file next to `path`
// (extension `ext`, so the writer picks the format); the file is removed again.
Result<std::vector<uint8_t>> WrittenBytes(const std::string& path, const char* ext, const Geometry& geometry,
                                          const SliceWriteFn& write) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = StrCat(path, ".", ::getpid(), ".", counter++, ".tmp", ext);
  struct Remove {
    std::string p;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } cleanup{tmp};
  ITKIT_RETURN_IF_ERROR(write(tmp, geometry));
  return ReadFile(tmp);
}

// A one-slice template of `g` (header with the right geometry, one slice of data).
Result<std::vector<uint8_t>> OneSliceTemplate(const std::string& path, const char* ext, const Geometry& g,
                                              const SliceWriteFn& write_template) {
  Geometry slice = g;
  slice.size[2] = 1;
  return WrittenBytes(path, ext, slice, write_template);
}

// `plain` bytes as they are, then the gzip members.
Status WriteParts(const std::string& path, const std::string& plain, const std::vector<std::vector<uint8_t>>& members) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(plain.data(), static_cast<std::streamsize>(plain.size()));
  for (const auto& m : members) out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size()));
  out.close();
  if (!out) return IoError(path, ": write failed");
  return Status::Ok();
}

// The text header of an ITK-written one-slice attached NRRD ("encoding: raw"), with
// `sizes` patched to g's slices and the encoding to gzip; empty when it is not the
// header expected (then ITK writes the file itself).
std::string PatchedNrrdHeader(const std::vector<uint8_t>& file, const Geometry& g, size_t slice_bytes) {
  const std::string text(file.begin(), file.end());
  const size_t end = text.find("\n\n");
  if (text.rfind("NRRD", 0) != 0 || end == std::string::npos || file.size() != end + 2 + slice_bytes) return {};
  std::string header;
  bool sizes = false, encoding = false;
  size_t pos = 0;
  while (pos <= end) {
    const size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("sizes:", 0) == 0) {
      if (line != StrCat("sizes: ", g.size[0], " ", g.size[1], " 1")) return {};
      line = StrCat("sizes: ", g.size[0], " ", g.size[1], " ", g.size[2]);
      sizes = true;
    } else if (line.rfind("encoding:", 0) == 0) {
      if (line != "encoding: raw") return {};
      line = "encoding: gzip";
      encoding = true;
    } else if (line.rfind("data file:", 0) == 0 || line.rfind("datafile:", 0) == 0 ||
               line.rfind("line skip:", 0) == 0 || line.rfind("byte skip:", 0) == 0) {
      return {};  // a detached or offset layout: not the simple case
    }
    header += line + "\n";
  }
  if (!sizes || !encoding) return {};
  return header + "\n";
}

}  // namespace

Status WriteNiftiGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                    bool label_map, int level, ThreadPool* pool, const SliceWriteFn& write_nifti) {
  const size_t slice_bytes = static_cast<size_t>(g.size[0] * g.size[1]) * bytes_per_voxel;
  const size_t data_bytes = slice_bytes * static_cast<size_t>(g.size[2]);
  ITKIT_ASSIGN_OR_RETURN(std::vector<uint8_t> file, OneSliceTemplate(path, ".nii", g, write_nifti));
  std::vector<uint8_t> header = PatchedHeader(file, g, slice_bytes);

  std::vector<std::vector<uint8_t>> members;
  if (!header.empty()) {
    ITKIT_ASSIGN_OR_RETURN(std::vector<uint8_t> head, GzipCompress(header.data(), header.size(), level));
    members.push_back(std::move(head));
    ITKIT_ASSIGN_OR_RETURN(auto body, GzipMembers(static_cast<const uint8_t*>(voxels), data_bytes, level, pool,
                                                  label_map ? bytes_per_voxel : 0));
    for (auto& m : body) members.push_back(std::move(m));
  } else {
    // Unexpected header: let ITK write everything uncompressed and gzip that.
    ITKIT_ASSIGN_OR_RETURN(file, WrittenBytes(path, ".nii", g, write_nifti));
    ITKIT_ASSIGN_OR_RETURN(members, GzipMembers(file.data(), file.size(), level, pool));
  }
  return WriteParts(path, "", members);
}

Result<bool> WriteNrrdGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                         bool label_map, int level, ThreadPool* pool, const SliceWriteFn& write_nrrd) {
  const size_t slice_bytes = static_cast<size_t>(g.size[0] * g.size[1]) * bytes_per_voxel;
  const size_t data_bytes = slice_bytes * static_cast<size_t>(g.size[2]);
  ITKIT_ASSIGN_OR_RETURN(std::vector<uint8_t> file, OneSliceTemplate(path, ".nrrd", g, write_nrrd));
  const std::string header = PatchedNrrdHeader(file, g, slice_bytes);
  if (header.empty()) return false;
  ITKIT_ASSIGN_OR_RETURN(auto members, GzipMembers(static_cast<const uint8_t*>(voxels), data_bytes, level, pool,
                                                   label_map ? bytes_per_voxel : 0));
  ITKIT_RETURN_IF_ERROR(WriteParts(path, header, members));
  return true;
}

}  // namespace itkit::pipeline
