// ITK 5.2's NIfTI and MetaImage readers zero-fill (NIfTI) or only print a warning
// (MetaImage) when the voxel data is shorter than the header says, and report
// success. A truncated upload must be an error, not a silent wrong segmentation, so
// these formats are checked here before ITK reads them.
#include "data_check.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace itkit::pipeline {
namespace {

namespace fs = std::filesystem;

bool EndsWith(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  for (size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - n + i])) != suffix[i]) return false;
  return true;
}

// Bytes a zlib or gzip stream (concatenated gzip members included) inflates to,
// counting at most `limit`; nothing is kept.
Result<uint64_t> InflatedSize(const std::string& path, uint64_t offset, uint64_t limit) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return IoError(path, ": cannot open");
  f.seekg(static_cast<std::streamoff>(offset));
  std::vector<unsigned char> in(1 << 16), out(1 << 18);
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) return Internal("zlib init failed");
  uint64_t total = 0;
  int rc = Z_OK;
  bool eof = false;
  while (total < limit) {
    if (z.avail_in == 0 && !eof) {
      f.read(reinterpret_cast<char*>(in.data()), static_cast<std::streamsize>(in.size()));
      z.next_in = in.data();
      z.avail_in = static_cast<uInt>(f.gcount());
      eof = f.gcount() == 0;
    }
    if (z.avail_in == 0 && eof) break;
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&z, Z_NO_FLUSH);
    total += out.size() - z.avail_out;
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0 && f.peek() == EOF) break;
      inflateReset(&z);  // another gzip member follows
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      break;  // corrupt stream: count what came out
    }
  }
  inflateEnd(&z);
  return total;
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const auto s = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(s);
}

Status Short(const std::string& path, uint64_t have, uint64_t need) {
  return InvalidArgument(path, ": truncated image data (", have, " of ", need, " bytes)");
}

// NIfTI-1: the header's own dims, bitpix and vox_offset give the file's length.
Status CheckNifti(const std::string& path, bool gz) {
  unsigned char h[352];
  size_t got = 0;
  if (gz) {
    gzFile g = gzopen(path.c_str(), "rb");
    if (g == nullptr) return IoError(path, ": cannot open");
    const int n = gzread(g, h, sizeof(h));
    gzclose(g);
    got = n > 0 ? static_cast<size_t>(n) : 0;
  } else {
    std::ifstream f(path, std::ios::binary);
    f.read(reinterpret_cast<char*>(h), sizeof(h));
    got = static_cast<size_t>(f.gcount());
  }
  if (got < 348) return InvalidArgument(path, ": NIfTI header is truncated");
  int32_t size_hdr;
  std::memcpy(&size_hdr, h, 4);
  const bool swap = size_hdr != 348;
  auto i16 = [&](size_t off) {
    uint16_t v;
    std::memcpy(&v, h + off, 2);
    if (swap) v = static_cast<uint16_t>((v >> 8) | (v << 8));
    return static_cast<int16_t>(v);
  };
  auto f32 = [&](size_t off) {
    uint32_t v;
    std::memcpy(&v, h + off, 4);
    if (swap) v = __builtin_bswap32(v);
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  };
  if (std::memcmp(h + 344, "n+1", 4) != 0) return Status::Ok();  // .hdr/.img pair or NIfTI-2: ITK checks
  const int ndim = i16(40);
  uint64_t voxels = 1;
  for (int i = 1; i <= ndim && i <= 7; ++i) voxels *= static_cast<uint64_t>(std::max<int16_t>(i16(40 + 2 * static_cast<size_t>(i)), 1));
  const uint64_t need = static_cast<uint64_t>(std::max(f32(108), 352.0f)) + voxels * static_cast<uint64_t>(std::max<int16_t>(i16(72), 8)) / 8;
  if (!gz) {
    const uint64_t have = FileSize(path);
    return have >= need ? Status::Ok() : Short(path, have, need);
  }
  // The gzip trailer holds the length mod 2^32: equal means complete (a cut file
  // leaves compressed bytes there, which match only by chance). Otherwise count,
  // since several gzip members (bgzip) make the trailer the last member's only.
  const uint64_t size = FileSize(path);
  if (size >= 18) {
    std::ifstream f(path, std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size - 4));
    unsigned char t[4];
    f.read(reinterpret_cast<char*>(t), 4);
    const uint32_t isize = t[0] | (t[1] << 8) | (t[2] << 16) | (static_cast<uint32_t>(t[3]) << 24);
    if (f && isize == static_cast<uint32_t>(need)) return Status::Ok();
  }
  ITKIT_ASSIGN_OR_RETURN(uint64_t have, InflatedSize(path, 0, need));
  return have >= need ? Status::Ok() : Short(path, have, need);
}

// MetaImage: "Key = Value" lines up to ElementDataFile; LOCAL data follows it.
Status CheckMeta(const std::string& path, uint64_t need) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return IoError(path, ": cannot open");
  std::string line, data_file;
  bool compressed = false;
  int64_t header_size = 0;
  uint64_t offset = 0;
  for (int lines = 0; lines < 1000 && std::getline(f, line); ++lines) {
    offset += line.size() + 1;
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    auto trim = [](std::string s) {
      const auto b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
      return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    };
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key == "CompressedData") compressed = value == "True" || value == "true";
    if (key == "HeaderSize") header_size = std::atoll(value.c_str());
    if (key == "ElementDataFile") {
      data_file = value;
      break;
    }
  }
  if (data_file.empty() || data_file == "LIST" || data_file.find('%') != std::string::npos ||
      data_file.find(' ') != std::string::npos)
    return Status::Ok();  // file lists and patterns: left to ITK
  std::string file = path;
  if (data_file != "LOCAL") {
    file = (fs::path(path).parent_path() / data_file).string();
    offset = header_size > 0 ? static_cast<uint64_t>(header_size) : 0;
  }
  if (!compressed) {
    const uint64_t size = FileSize(file);
    const uint64_t have = size > offset ? size - offset : 0;
    return have >= need ? Status::Ok() : Short(path, have, need);
  }
  ITKIT_ASSIGN_OR_RETURN(uint64_t have, InflatedSize(file, offset, need));
  return have >= need ? Status::Ok() : Short(path, have, need);
}

}  // namespace

Status CheckDataComplete(const std::string& path, uint64_t data_bytes) {
  if (EndsWith(path, ".nii")) return CheckNifti(path, false);
  if (EndsWith(path, ".nii.gz")) return CheckNifti(path, true);
  if (EndsWith(path, ".mha") || EndsWith(path, ".mhd")) return CheckMeta(path, data_bytes);
  return Status::Ok();  // NRRD and GDCM fail on short data themselves
}

}  // namespace itkit::pipeline
