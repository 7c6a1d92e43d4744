// AVX2 + FMA + F16C kernels. The pragma enables these instructions for this file only; the engine
// calls into it only after checking the CPU has them (dispatch.cc).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#include <immintrin.h>

#include <algorithm>

#include "kernels/kernels.h"

namespace tunekit {
namespace {

inline float horizontal_sum(__m256 v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  return _mm_cvtss_f32(sum);
}

float dot(const float* a, const float* b, size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; i++) sum += a[i] * b[i];
  return sum;
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; i++) dst[i] = bf16_to_float(src[i]);
}

void axpy(float a, const float* x, float* y, size_t n) {
  const __m256 scale = _mm256_set1_ps(a);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(scale, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

void axpy4(const float* a, const float* const* x, float* y, size_t n) {
  const __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]), a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 sum = _mm256_loadu_ps(y + i);
    sum = _mm256_fmadd_ps(a0, _mm256_loadu_ps(x[0] + i), sum);
    sum = _mm256_fmadd_ps(a1, _mm256_loadu_ps(x[1] + i), sum);
    sum = _mm256_fmadd_ps(a2, _mm256_loadu_ps(x[2] + i), sum);
    sum = _mm256_fmadd_ps(a3, _mm256_loadu_ps(x[3] + i), sum);
    _mm256_storeu_ps(y + i, sum);
  }
  for (; i < n; i++) y[i] += a[0] * x[0][i] + a[1] * x[1][i] + a[2] * x[2][i] + a[3] * x[3][i];
}

// Eight codes per step: four bytes widened to 16-bit lanes holding (low nibble << 8 | high nibble)
// are, as bytes, the codes in element order; two 8-entry table lookups and a blend on bit 3.
void nf4_to_f32(const uint8_t* packed, size_t pairs, float scale, const float* code, float* out) {
  const __m256 low_table = _mm256_loadu_ps(code), high_table = _mm256_loadu_ps(code + 8);
  const __m256 scales = _mm256_set1_ps(scale);
  const __m128i mask = _mm_set1_epi16(0x0f);
  size_t i = 0;
  for (; i + 4 <= pairs; i += 4) {
    int32_t word;
    __builtin_memcpy(&word, packed + i, 4);
    const __m128i bytes = _mm_cvtepu8_epi16(_mm_cvtsi32_si128(word));
    const __m128i interleaved = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask),
                                             _mm_slli_epi16(_mm_and_si128(bytes, mask), 8));
    const __m256i index = _mm256_cvtepu8_epi32(interleaved);
    const __m256 low = _mm256_permutevar8x32_ps(low_table, index);
    const __m256 high = _mm256_permutevar8x32_ps(high_table, index);
    const __m256 value = _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32(index, 28)));
    _mm256_storeu_ps(out + 2 * i, _mm256_mul_ps(value, scales));
  }
  for (; i < pairs; i++) {
    out[2 * i] = code[packed[i] >> 4] * scale;
    out[2 * i + 1] = code[packed[i] & 0x0f] * scale;
  }
}

// Four rows of x against three rows of w, summed as row_dots sums: 12 accumulators, three w vectors
// and one x vector of the 16 registers.
constexpr size_t kDotRows = 4, kDotCols = 3;

void dot_tile(const float* x, size_t x_stride, const float* const* w, size_t n, float* out, size_t out_stride,
              size_t rows, size_t cols) {
  const float* xs[kDotRows];
  for (size_t i = 0; i < kDotRows; i++) xs[i] = x + (i < rows ? i : 0) * x_stride;
  __m256 acc[kDotRows][kDotCols];
  for (auto& row : acc)
    for (auto& value : row) value = _mm256_setzero_ps();
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 b[kDotCols];
    for (size_t j = 0; j < kDotCols; j++) b[j] = _mm256_loadu_ps(w[j] + k);
    for (size_t i = 0; i < kDotRows; i++) {
      const __m256 a = _mm256_loadu_ps(xs[i] + k);
      for (size_t j = 0; j < kDotCols; j++) acc[i][j] = _mm256_fmadd_ps(a, b[j], acc[i][j]);
    }
  }
  float sums[kDotRows][kDotCols];  // constant indices keep acc in registers
  for (size_t i = 0; i < kDotRows; i++)
    for (size_t j = 0; j < kDotCols; j++) sums[i][j] = horizontal_sum(acc[i][j]);
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++) {
      float sum = sums[i][j];
      for (size_t t = k; t < n; t++) sum += xs[i][t] * w[j][t];
      out[i * out_stride + j] = sum;
    }
}

// One row of x against count rows of w, summed as dot_tile sums: one accumulator per output over
// steps of 8, horizontal_sum, then the tail in order.
void row_dots(const float* x, const float* const* w, size_t n, size_t count, float* out) {
  for (size_t j0 = 0; j0 < count; j0 += 4) {
    const size_t cols = std::min<size_t>(4, count - j0);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    const float* ws[4];
    for (size_t j = 0; j < 4; j++) ws[j] = w[j0 + (j < cols ? j : 0)];
    size_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 a = _mm256_loadu_ps(x + k);
      for (size_t j = 0; j < 4; j++) acc[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(ws[j] + k), acc[j]);
    }
    for (size_t j = 0; j < cols; j++) {
      float sum = horizontal_sum(acc[j]);
      for (size_t t = k; t < n; t++) sum += x[t] * ws[j][t];
      out[j0 + j] = sum;
    }
  }
}

// A 6 × 16 accumulated tile: 12 accumulators, two b vectors and a broadcast of a in the 16 registers.
constexpr size_t kTileRows = 6, kTileCols = 16;

inline __m256 load_row(const float* c, __m256i mask, bool valid) {
  return valid ? _mm256_maskload_ps(c, mask) : _mm256_setzero_ps();
}

void gemm_tile(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t rows, size_t cols) {
  __m256i mask[2];
  for (size_t v = 0; v < 2; v++) {
    const int left = int(cols > 8 * v ? cols - 8 * v : 0);
    mask[v] = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  __m256 acc[kTileRows][2];
  for (size_t i = 0; i < kTileRows; i++)
    for (size_t v = 0; v < 2; v++) acc[i][v] = load_row(c + i * ldc + 8 * v, mask[v], i < rows);
  for (size_t k = 0; k < kc; k++, a += kTileRows, b += kTileCols) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    for (size_t i = 0; i < kTileRows; i++) {
      const __m256 value = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(value, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(value, b1, acc[i][1]);
    }
  }
  for (size_t i = 0; i < kTileRows; i++)  // constant indices keep acc in registers
    if (i < rows)
      for (size_t v = 0; v < 2; v++) _mm256_maskstore_ps(c + i * ldc + 8 * v, mask[v], acc[i][v]);
}

const Kernels kAvx2 = {"avx2",     dot,      f16_to_f32, bf16_to_f32, axpy, axpy4, nf4_to_f32,
                       kDotRows,   kDotCols, dot_tile, kTileRows,  kTileCols,   384,  gemm_tile,
                       dropout_mask_reference, dropout_apply_reference, nullptr, nullptr, nullptr, row_dots, nullptr, nullptr, nullptr, nullptr,
                         nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr};

}  // namespace

const Kernels& avx2_kernels() { return kAvx2; }

}  // namespace tunekit

#if defined(__clang__)
#pragma clang attribute pop
#endif
