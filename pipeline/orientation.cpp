// DICOMOrient's axis bookkeeping, written out so that ITK 5.2 (which lacks
// DICOMOrientImageFilter) gives the same voxels and geometry as SimpleITK.
#include "orientation.h"

#include <cctype>
#include <cmath>

namespace itkit::pipeline {
namespace {

// Physical axis (0 = x: L/R, 1 = y: P/A, 2 = z: S/I) of a letter; -1 if none.
int PhysicalAxis(char letter) {
  switch (letter) {
    case 'L': case 'R': return 0;
    case 'P': case 'A': return 1;
    case 'S': case 'I': return 2;
    default: return -1;
  }
}

// LPS is ITK's positive direction on each physical axis.
char Letter(int physical_axis, bool positive) {
  static const char kPos[] = {'L', 'P', 'S'}, kNeg[] = {'R', 'A', 'I'};
  return positive ? kPos[physical_axis] : kNeg[physical_axis];
}

double Determinant(const std::array<double, 9>& m) {
  return m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) +
         m[2] * (m[3] * m[7] - m[4] * m[6]);
}

}  // namespace

bool AxisMap::identity() const {
  return order == std::array<int, 3>{0, 1, 2} && !flip[0] && !flip[1] && !flip[2];
}

Result<std::string> OrientationOf(const std::array<double, 9>& d) {
  for (double v : d)
    if (!std::isfinite(v)) return InvalidArgument("direction matrix is not finite");
  if (std::abs(Determinant(d)) < 1e-6) return InvalidArgument("direction matrix is singular");
  std::string code(3, '?');
  bool row_used[3] = {false, false, false}, col_used[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    // The largest remaining |cosine|; among equal values the last in row-major order,
    // which is the entry DICOMOrientImageFilter's multimap yields first.
    double best = -1;
    int br = -1, bc = -1;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        if (row_used[r] || col_used[c]) continue;
        const double a = std::abs(d[static_cast<size_t>(r * 3 + c)]);
        if (a >= best) { best = a; br = r; bc = c; }
      }
    row_used[br] = col_used[bc] = true;
    code[static_cast<size_t>(bc)] = Letter(br, d[static_cast<size_t>(br * 3 + bc)] > 0);
  }
  return code;
}

Result<std::string> NormalizeOrientationCode(const std::string& code) {
  std::string up;
  for (char ch : code) up += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  bool seen[3] = {false, false, false};
  if (up.size() != 3) return InvalidArgument("orientation '", code, "' must have three letters");
  for (char ch : up) {
    const int axis = PhysicalAxis(ch);
    if (axis < 0) return InvalidArgument("orientation '", code, "': '", ch, "' is not one of L R P A S I");
    if (seen[axis]) return InvalidArgument("orientation '", code, "' names an anatomical axis twice");
    seen[axis] = true;
  }
  return up;
}

Result<Reorientation> PlanReorientation(const Geometry& in, const std::string& target) {
  Reorientation r;
  ITKIT_ASSIGN_OR_RETURN(r.from, OrientationOf(in.direction));
  ITKIT_ASSIGN_OR_RETURN(r.to, NormalizeOrientationCode(target));
  r.input = in;
  Geometry& out = r.output;
  std::array<int64_t, 3> first{0, 0, 0};  // input index that becomes output index 0
  for (int j = 0; j < 3; ++j) {
    const char want = r.to[static_cast<size_t>(j)];
    int i = 0;
    while (PhysicalAxis(r.from[static_cast<size_t>(i)]) != PhysicalAxis(want)) ++i;
    const bool flip = r.from[static_cast<size_t>(i)] != want;
    r.map.order[static_cast<size_t>(j)] = i;
    r.map.flip[static_cast<size_t>(j)] = flip;
    out.size[static_cast<size_t>(j)] = in.size[static_cast<size_t>(i)];
    out.spacing[static_cast<size_t>(j)] = in.spacing[static_cast<size_t>(i)];
    for (int row = 0; row < 3; ++row)
      out.direction[static_cast<size_t>(row * 3 + j)] = (flip ? -1.0 : 1.0) * in.dir(row, i);
    if (flip) first[static_cast<size_t>(i)] = in.size[static_cast<size_t>(i)] - 1;
  }
  for (int row = 0; row < 3; ++row) {
    double p = in.origin[static_cast<size_t>(row)];
    for (int i = 0; i < 3; ++i)
      p += in.dir(row, i) * static_cast<double>(first[static_cast<size_t>(i)]) * in.spacing[static_cast<size_t>(i)];
    out.origin[static_cast<size_t>(row)] = p;
  }
  return r;
}

void ForwardStrides(const Reorientation& r, int64_t* offset, std::array<int64_t, 3>* strides) {
  const auto& n = r.input.size;
  const std::array<int64_t, 3> in_strides{1, n[0], n[0] * n[1]};
  *offset = 0;
  for (size_t j = 0; j < 3; ++j) {
    const auto i = static_cast<size_t>(r.map.order[j]);
    (*strides)[j] = r.map.flip[j] ? -in_strides[i] : in_strides[i];
    if (r.map.flip[j]) *offset += (n[i] - 1) * in_strides[i];
  }
}

void BackwardStrides(const Reorientation& r, int64_t* offset, std::array<int64_t, 3>* strides) {
  const auto& m = r.output.size;
  const std::array<int64_t, 3> out_strides{1, m[0], m[0] * m[1]};
  *offset = 0;
  for (size_t j = 0; j < 3; ++j) {
    const auto i = static_cast<size_t>(r.map.order[j]);
    (*strides)[i] = r.map.flip[j] ? -out_strides[j] : out_strides[j];
    if (r.map.flip[j]) *offset += (m[j] - 1) * out_strides[j];
  }
}

}  // namespace itkit::pipeline
