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

const Kernels kAvx512 = {"avx512", dot, dot4x4, f16_to_f32, bf16_to_f32, axpy, axpy4, nf4_to_f32};

}  // namespace

const Kernels& avx512_kernels() { return kAvx512; }

}  // namespace tunekit

#if defined(__clang__)
#pragma clang attribute pop
#endif
