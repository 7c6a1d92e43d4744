// AVX-512 (F, BW, VL, DQ) kernels; see avx2.cc for how the target pragma and dispatch fit together.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// GCC 12 warns about its own _mm512_undefined_* helpers; the warnings are not about this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels/kernels.h"

namespace tunekit {
namespace {

float dot(const float* a, const float* b, size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {  // masked tail: no scalar loop
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i), _mm512_maskz_loadu_ps(mask, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

// Four rows of x against four rows of w: 16 accumulators + 4 w vectors + 1 x vector of 32 registers.
void dot4x4(const float* x, size_t x_stride, const float* const* w, size_t n, float* out) {
  __m512 acc[4][4];
  for (auto& row : acc)
    for (auto& value : row) value = _mm512_setzero_ps();
  size_t k = 0;
  for (; k < n; k += 16) {
    const __mmask16 mask = n - k >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - k)) - 1);
    const __m512 b0 = _mm512_maskz_loadu_ps(mask, w[0] + k), b1 = _mm512_maskz_loadu_ps(mask, w[1] + k);
    const __m512 b2 = _mm512_maskz_loadu_ps(mask, w[2] + k), b3 = _mm512_maskz_loadu_ps(mask, w[3] + k);
    for (int i = 0; i < 4; i++) {
      const __m512 a = _mm512_maskz_loadu_ps(mask, x + i * x_stride + k);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(a, b2, acc[i][2]);
      acc[i][3] = _mm512_fmadd_ps(a, b3, acc[i][3]);
    }
  }
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) out[i * 4 + j] = _mm512_reduce_add_ps(acc[i][j]);
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  for (; i < n; i++) dst[i] = half_to_float(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
  for (; i < n; i++) dst[i] = bf16_to_float(src[i]);
}

void axpy(float a, const float* x, float* y, size_t n) {
  const __m512 scale = _mm512_set1_ps(a);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(scale, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; i++) y[i] += a * x[i];
}

void axpy4(const float* a, const float* const* x, float* y, size_t n) {
  const __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]), a2 = _mm512_set1_ps(a[2]), a3 = _mm512_set1_ps(a[3]);
  size_t i = 0;
  for (; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    __m512 sum = _mm512_maskz_loadu_ps(mask, y + i);
    sum = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(mask, x[0] + i), sum);
    sum = _mm512_fmadd_ps(a1, _mm512_maskz_loadu_ps(mask, x[1] + i), sum);
    sum = _mm512_fmadd_ps(a2, _mm512_maskz_loadu_ps(mask, x[2] + i), sum);
    sum = _mm512_fmadd_ps(a3, _mm512_maskz_loadu_ps(mask, x[3] + i), sum);
    _mm512_mask_storeu_ps(y + i, mask, sum);
  }
}

// Thirty-two codes per step: sixteen bytes widened to 16-bit lanes holding (low nibble << 8 | high
// nibble) are, as bytes, the codes in element order; one 16-entry table lookup per 16 values.
void nf4_to_f32(const uint8_t* packed, size_t pairs, float scale, const float* code, float* out) {
  const __m512 table = _mm512_loadu_ps(code);
  const __m512 scales = _mm512_set1_ps(scale);
  const __m256i mask = _mm256_set1_epi16(0x0f);
  size_t i = 0;
  for (; i + 16 <= pairs; i += 16) {
    const __m256i bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + i)));
    const __m256i interleaved = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask),
                                                _mm256_slli_epi16(_mm256_and_si256(bytes, mask), 8));
    const __m512i first = _mm512_cvtepu8_epi32(_mm256_castsi256_si128(interleaved));
    const __m512i second = _mm512_cvtepu8_epi32(_mm256_extracti128_si256(interleaved, 1));
    _mm512_storeu_ps(out + 2 * i, _mm512_mul_ps(_mm512_permutexvar_ps(first, table), scales));
    _mm512_storeu_ps(out + 2 * i + 16, _mm512_mul_ps(_mm512_permutexvar_ps(second, table), scales));
  }
  for (; i < pairs; i++) {
    out[2 * i] = code[packed[i] >> 4] * scale;
    out[2 * i + 1] = code[packed[i] & 0x0f] * scale;
  }
}

// _mm512_reduce_add_ps of four vectors at once, with its pairs: lanes i and i + 8, then i and i + 4,
// i and i + 2, 0 and 1 (so the same sums to the bit).
inline void reduce_add4(__m512 v0, __m512 v1, __m512 v2, __m512 v3, float* out) {
  // [v0 lanes 0-7 | v1 lanes 0-7] + [v0 lanes 8-15 | v1 lanes 8-15], and the same for v2, v3.
  const __m512 h01 = _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x44), _mm512_shuffle_f32x4(v0, v1, 0xee));
  const __m512 h23 = _mm512_add_ps(_mm512_shuffle_f32x4(v2, v3, 0x44), _mm512_shuffle_f32x4(v2, v3, 0xee));
  // Each 128-bit lane q: vector q's lanes 0-3 + 4-7 of the sums above.
  __m512 q = _mm512_add_ps(_mm512_shuffle_f32x4(h01, h23, 0x88), _mm512_shuffle_f32x4(h01, h23, 0xdd));
  q = _mm512_add_ps(q, _mm512_permute_ps(q, 0x4e));
  q = _mm512_add_ps(q, _mm512_permute_ps(q, 0xb1));
  const __m512i first_lanes = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  _mm_storeu_ps(out, _mm512_castps512_ps128(_mm512_permutexvar_ps(first_lanes, q)));
}

// Four rows of x against six rows of w, summed as dot4x4 sums: 24 accumulators, six w vectors and
// one x vector of the 32 registers; each step of 16 loads 10 vectors for 24 fused multiply-adds.
constexpr size_t kDotRows = 4, kDotCols = 6;

void dot_tile(const float* x, size_t x_stride, const float* const* w, size_t n, float* out, size_t out_stride,
              size_t rows, size_t cols) {
  const float* xs[kDotRows];
  for (size_t i = 0; i < kDotRows; i++) xs[i] = x + (i < rows ? i : 0) * x_stride;
  __m512 acc[kDotRows][kDotCols];
  for (auto& row : acc)
    for (auto& value : row) value = _mm512_setzero_ps();
  for (size_t k = 0; k < n; k += 16) {
    const __mmask16 mask = n - k >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - k)) - 1);
    __m512 b[kDotCols];
    for (size_t j = 0; j < kDotCols; j++) b[j] = _mm512_maskz_loadu_ps(mask, w[j] + k);
    for (size_t i = 0; i < kDotRows; i++) {
      const __m512 a = _mm512_maskz_loadu_ps(mask, xs[i] + k);
      for (size_t j = 0; j < kDotCols; j++) acc[i][j] = _mm512_fmadd_ps(a, b[j], acc[i][j]);
    }
  }
  float sums[kDotCols][kDotRows];
#pragma GCC unroll 8  // constant indices keep acc in registers through the loop above
  for (size_t j = 0; j < kDotCols; j++) reduce_add4(acc[0][j], acc[1][j], acc[2][j], acc[3][j], sums[j]);
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++) out[i * out_stride + j] = sums[j][i];
}

// An 8 × 48 accumulated tile: 24 accumulators, three b vectors and a broadcast of a fit the 32
// registers, and each step of k loads 3 vectors and 8 scalars for 24 fused multiply-adds.
constexpr size_t kTileRows = 8, kTileVectors = 3, kTileCols = 16 * kTileVectors;

inline __m512 load_row(const float* c, __mmask16 mask, bool valid) {
  return valid ? _mm512_maskz_loadu_ps(mask, c) : _mm512_setzero_ps();
}

void gemm_tile(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t rows, size_t cols) {
  __mmask16 mask[kTileVectors];
  for (size_t v = 0; v < kTileVectors; v++) {
    const size_t left = cols > 16 * v ? cols - 16 * v : 0;
    mask[v] = left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
  }
  __m512 acc[kTileRows][kTileVectors];
  for (size_t i = 0; i < kTileRows; i++)
    for (size_t v = 0; v < kTileVectors; v++) acc[i][v] = load_row(c + i * ldc + 16 * v, mask[v], i < rows);
  for (size_t k = 0; k < kc; k++, a += kTileRows, b += kTileCols) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16), b2 = _mm512_loadu_ps(b + 32);
    for (size_t i = 0; i < kTileRows; i++) {
      const __m512 value = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(value, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(value, b1, acc[i][1]);
      acc[i][2] = _mm512_fmadd_ps(value, b2, acc[i][2]);
    }
  }
  for (size_t i = 0; i < kTileRows; i++)  // constant indices keep acc in registers
    if (i < rows)
      for (size_t v = 0; v < kTileVectors; v++) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

// Eight elements a step: splitmix64's output for eight counters in the 64-bit lanes (vpmullq), an
// unsigned compare against the threshold, the keep-scales and the dropped inputs as eight floats.
void dropout_mask(uint64_t key, uint64_t first, size_t n, uint64_t threshold, float kept, const float* x, float* mask,
                  float* dropped) {
  const __m512i gamma = _mm512_set1_epi64(static_cast<long long>(kSplitMixGamma));
  const __m512i step = _mm512_set1_epi64(static_cast<long long>(8 * kSplitMixGamma));
  const __m512i c1 = _mm512_set1_epi64(static_cast<long long>(0xbf58476d1ce4e5b9ull));
  const __m512i c2 = _mm512_set1_epi64(static_cast<long long>(0x94d049bb133111ebull));
  const __m512i limit = _mm512_set1_epi64(static_cast<long long>(threshold));
  const __m256 keep = _mm256_set1_ps(kept);
  __m512i state = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(key + (first + 1) * kSplitMixGamma)),
                                   _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), gamma));
  size_t i = 0;
  for (; i + 8 <= n; i += 8, state = _mm512_add_epi64(state, step)) {
    __m512i z = _mm512_mullo_epi64(_mm512_xor_si512(state, _mm512_srli_epi64(state, 30)), c1);
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), c2);
    z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
    const __m256 scale = _mm256_maskz_mov_ps(_mm512_cmpge_epu64_mask(z, limit), keep);
    _mm256_storeu_ps(mask + i, scale);
    _mm256_storeu_ps(dropped + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), scale));
  }
  dropout_mask_reference(key, first + i, n - i, threshold, kept, x + i, mask + i, dropped + i);
}

const Kernels kAvx512 = {"avx512",   dot,       dot4x4,   f16_to_f32, bf16_to_f32, axpy, axpy4, nf4_to_f32,
                         kDotRows,   kDotCols,  dot_tile, kTileRows,  kTileCols,   128,  gemm_tile,
                         dropout_mask};

}  // namespace

const Kernels& avx512_kernels() { return kAvx512; }

}  // namespace tunekit

#if defined(__clang__)
#pragma clang attribute pop
#endif
