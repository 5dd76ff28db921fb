// nvcuda::wmma under the emulator. A fragment's distribution over the lanes is
// unspecified by CUDA, so here every lane holds the whole tile (code that is correct on
// the GPU only applies the same operation to every element of x[]). Each operation is
// warp-collective (all 32 lanes, converged) and checks what the CUDA guide requires:
// a 256-bit aligned pointer and a leading dimension that is a multiple of 16 bytes.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "itkit_emu/core.h"

namespace itkit_emu {
void WarpConverged(const char* what);  // a collective of all 32 lanes with no data
}

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K>
struct TileShape;
template <int M, int N, int K>
struct TileShape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct TileShape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct TileShape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = TileShape<Use, M, N, K>::rows, cols = TileShape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];  // row-major, whole tile
};

namespace detail {
template <typename T>
void CheckPointer(const char* what, const T* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
    ::itkit_emu::Fail(std::string(what) + ": pointer not 256-bit aligned");
  if ((ldm * sizeof(T)) % 16 != 0)
    ::itkit_emu::Fail(std::string(what) + ": leading dimension not a multiple of 16 bytes");
}
template <typename T, typename Src>
void Load(T* x, int rows, int cols, const Src* p, unsigned ldm, bool row_major_memory) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) x[r * cols + c] = row_major_memory ? p[r * ldm + c] : p[c * ldm + r];
}
inline float ToFloat(float v) { return v; }
inline float ToFloat(__half v) { return __half2float(v); }
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
  ::itkit_emu::WarpConverged("wmma::fill_fragment");
  for (T& e : f.x) e = static_cast<T>(value);
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  ::itkit_emu::WarpConverged("wmma::load_matrix_sync");
  detail::CheckPointer("wmma::load_matrix_sync", p, ldm);
  detail::Load(f.x, f.rows, f.cols, p, ldm, std::is_same_v<Layout, row_major>);
}

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  ::itkit_emu::WarpConverged("wmma::load_matrix_sync");
  detail::CheckPointer("wmma::load_matrix_sync", p, ldm);
  detail::Load(f.x, f.rows, f.cols, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  ::itkit_emu::WarpConverged("wmma::store_matrix_sync");
  detail::CheckPointer("wmma::store_matrix_sync", p, ldm);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

// d = a * b + c, products and sums in f32.
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  ::itkit_emu::WarpConverged("wmma::mma_sync");
  TC out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float sum = detail::ToFloat(c.x[i * N + j]);
      for (int k = 0; k < K; ++k) sum += detail::ToFloat(a.x[i * K + k]) * detail::ToFloat(b.x[k * N + j]);
      out[i * N + j] = static_cast<TC>(sum);
    }
  for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}

}  // namespace nvcuda::wmma
