#include "nifti_gz_writer.h"

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

}  // namespace

Status WriteNiftiGz(const std::string& path, const Geometry& g, const void* voxels, size_t bytes_per_voxel,
                    bool label_map, int level, ThreadPool* pool, const NiftiWriteFn& write_nifti) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = StrCat(path, ".", ::getpid(), ".", counter++, ".tmp.nii");
  struct Remove {
    std::string p;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } cleanup{tmp};
  Geometry slice = g;
  slice.size[2] = 1;
  const size_t slice_bytes = static_cast<size_t>(g.size[0] * g.size[1]) * bytes_per_voxel;
  const size_t data_bytes = slice_bytes * static_cast<size_t>(g.size[2]);
  ITKIT_RETURN_IF_ERROR(write_nifti(tmp, slice));
  ITKIT_ASSIGN_OR_RETURN(std::vector<uint8_t> file, ReadFile(tmp));
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
    ITKIT_RETURN_IF_ERROR(write_nifti(tmp, g));
    ITKIT_ASSIGN_OR_RETURN(file, ReadFile(tmp));
    ITKIT_ASSIGN_OR_RETURN(members, GzipMembers(file.data(), file.size(), level, pool));
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (const auto& m : members) out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.size()));
  out.close();
  if (!out) return IoError(path, ": write failed");
  return Status::Ok();
}

}  // namespace itkit::pipeline
