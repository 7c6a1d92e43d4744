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

#include <algorithm>
#include <cmath>
#include <cstring>

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

// Four rows of x against six rows of w, summed as row_dots sums: 24 accumulators, six w vectors and
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

// The lanes of a tile's kTileVectors column vectors that lie within its `cols` columns.
inline void tile_masks(size_t cols, __mmask16* mask) {
  for (size_t v = 0; v < kTileVectors; v++) {
    const size_t left = cols > 16 * v ? cols - 16 * v : 0;
    mask[v] = left >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << left) - 1);
  }
}

void gemm_tile(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t rows, size_t cols) {
  __mmask16 mask[kTileVectors];
  tile_masks(cols, mask);
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

// The first n of sixteen lanes.
inline __mmask16 first_lanes(int n) { return n >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << n) - 1); }

// Eight elements a step: splitmix64's output for eight counters in the 64-bit lanes (vpmullq), an
// unsigned compare against the threshold (one byte of the mask's bits), the dropped inputs as eight
// floats.
void dropout_mask(uint64_t key, uint64_t first, size_t n, uint64_t threshold, float kept, const float* x,
                  uint8_t* bits, float* dropped) {
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
    const __mmask8 kept_lanes = _mm512_cmpge_epu64_mask(z, limit);
    if (bits) bits[i / 8] = kept_lanes;
    _mm256_storeu_ps(dropped + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_maskz_mov_ps(kept_lanes, keep)));
  }
  dropout_mask_reference(key, first + i, n - i, threshold, kept, x + i, bits ? bits + i / 8 : nullptr, dropped + i);
}

// Sixteen elements a step, their bits read as one unaligned 32-bit word and shifted into a mask.
void dropout_apply(const uint8_t* bits, size_t offset, size_t n, float kept, const float* x, float* out,
                   bool accumulate) {
  const __m512 keep = _mm512_set1_ps(kept);
  for (size_t i = 0; i < n; i += 16) {
    const size_t bit = offset + i;
    uint32_t word;
    std::memcpy(&word, bits + bit / 8, sizeof(word));
    const __mmask16 lanes = first_lanes(int(std::min<size_t>(16, n - i)));
    const __m512 scale = _mm512_maskz_mov_ps(static_cast<__mmask16>(word >> (bit % 8)), keep);
    __m512 value = _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, x + i), scale);
    // The product rounded before the sum, as the reference rounds it (no fused multiply-add here).
    __asm__("" : "+v"(value));
    if (accumulate) value = _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, out + i), value);
    _mm512_mask_storeu_ps(out + i, lanes, value);
  }
}

// ---- Attention, one query row at a time ----------------------------------------------------------

// The sixteen horizontal sums of v[0..15], lane j = _mm512_reduce_add_ps(v[j]) to the bit: the same
// pairs (lanes i and i + 8, then i and i + 4, i and i + 2, 0 and 1), four vectors' worth per shuffle.
inline __m512 reduce_add16(const __m512* v) {
  __m512 w[8], x[4], y[2];
  for (int m = 0; m < 8; m++)  // [v2m lanes i + i+8 | v2m+1 lanes i + i+8]
    w[m] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * m], v[2 * m + 1], 0xee));
  for (int m = 0; m < 4; m++)  // 128-bit block b: vector 4m + b's lanes i + i+4
    x[m] = _mm512_add_ps(_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0x88),
                         _mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0xdd));
  for (int m = 0; m < 2; m++)  // block b: [lanes 0+2, 1+3] of vectors 8m + b and 8m + 4 + b
    y[m] = _mm512_add_ps(_mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0x44), _mm512_shuffle_ps(x[2 * m], x[2 * m + 1], 0xee));
  // Block b: the sums of vectors b, 4 + b, 8 + b, 12 + b; then lane j takes vector j's.
  const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(y[0], y[1], 0x88), _mm512_shuffle_ps(y[0], y[1], 0xdd));
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), z);
}

// q · rows[r] for the n ≤ 16 rows `stride` floats apart: per row, its NV vectors multiplied and added
// in order, then reduce_add16; rows past n give 0 (and are not read).
template <int NV>
inline __m512 dots16(const __m512* q, const float* rows, size_t stride, int n) {
  __m512 acc[16];
  for (int r = 0; r < 16; r++) {
    if (r < n) {
      const float* row = rows + size_t(r) * stride;
      __m512 sum = _mm512_mul_ps(q[0], _mm512_loadu_ps(row));
      for (int c = 1; c < NV; c++) sum = _mm512_fmadd_ps(q[c], _mm512_loadu_ps(row + 16 * c), sum);
      acc[r] = sum;
    } else {
      acc[r] = _mm512_setzero_ps();
    }
  }
  return reduce_add16(acc);
}

// e^x for sixteen floats (Cephes' expf: a degree-6 polynomial on x − n ln 2, then 2^n by scalef;
// within 2 ulp of e^x over the range softmax uses, 0 below about −104).
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

bool attention_head_dim(int D) { return D >= 16 && D <= 256 && D % 16 == 0; }

// Row r < R of `rows` (r · rows_stride apart) against the first count + r rows of `matrix` (keys or values,
// `stride` apart), sixteen at a time: each row's sixteen dots as dots16 sums them, reduced together,
// handed to finish(r, p, mask, sums) for matrix rows [p, p + 16) (mask: those row r sees). Each matrix
// row is read once for all R rows; only the R rows' vectors stay in registers.
template <int NV, int R, typename Finish>
inline void rows_dots16(const float* rows, size_t rows_stride, const float* matrix, size_t stride, int count,
                        const Finish& finish) {
  __m512 row[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) row[r][c] = _mm512_loadu_ps(rows + r * rows_stride + 16 * c);
  const int longest = count + R - 1;
  __m512 sums[R][16];
  for (int p = 0; p < longest; p += 16) {
    const int n = std::min(16, longest - p);
    for (int j = 0; j < n; j++) {
      const float* vector = matrix + size_t(p + j) * stride;
      __m512 v[NV];
      for (int c = 0; c < NV; c++) v[c] = _mm512_loadu_ps(vector + 16 * c);
      for (int r = 0; r < R; r++) {
        __m512 sum = _mm512_mul_ps(row[r][0], v[0]);
        for (int c = 1; c < NV; c++) sum = _mm512_fmadd_ps(row[r][c], v[c], sum);
        sums[r][j] = sum;
      }
    }
    for (int r = 0; r < R; r++) {
      const int seen = count + r - p;  // row r's matrix rows from p on
      if (seen <= 0) continue;
      for (int j = std::min(seen, 16); j < 16; j++) sums[r][j] = _mm512_setzero_ps();
      finish(r, p, first_lanes(seen), reduce_add16(sums[r]));
    }
  }
}

// Rows r < R of one head, consecutive in one sequence (row r: q + r · q_stride, the first count + r
// keys), each computed as it would be alone: its scores as dots16 sums them, its softmax (16 lanes of
// partial sums, then reduced), out = Σ weight_p v_p in the order of p with out in registers. What the
// rows share is the loads: each key and value is read once for all R rows, which from L2 (a head's
// keys of 256 positions are 64 KB) was what one row at a time waited on.
template <int NV, int R>
void attention_rows_d(const float* q, size_t q_stride, const float* keys, const float* values, size_t stride,
                      int count, float scale, float* out, float* lse, size_t lse_stride, float* scratch) {
  const int longest = count + R - 1;
  const __m512 scales = _mm512_set1_ps(scale);
  __m512 maximum[R];
  for (int r = 0; r < R; r++) maximum[r] = _mm512_set1_ps(-INFINITY);
  rows_dots16<NV, R>(q, q_stride, keys, stride, count, [&](int r, int p, __mmask16 mask, __m512 sum) {
    const __m512 s = _mm512_mul_ps(sum, scales);
    _mm512_mask_storeu_ps(scratch + r * longest + p, mask, s);
    maximum[r] = _mm512_mask_max_ps(maximum[r], mask, maximum[r], s);
  });
  for (int r = 0; r < R; r++) {
    float* scores = scratch + r * longest;
    const int seen = count + r;
    const float top = _mm512_reduce_max_ps(maximum[r]);
    const __m512 tops = _mm512_set1_ps(top);
    __m512 sums = _mm512_setzero_ps();
    for (int p = 0; p < seen; p += 16) {
      const __mmask16 mask = first_lanes(seen - p);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, scores + p), tops));
      _mm512_mask_storeu_ps(scores + p, mask, e);
      sums = _mm512_mask_add_ps(sums, mask, sums, e);
    }
    const float sum = _mm512_reduce_add_ps(sums);
    const __m512 divisor = _mm512_set1_ps(sum);
    for (int p = 0; p < seen; p += 16) {  // the weights e / Σ e, each rounded as one division
      const __mmask16 mask = first_lanes(seen - p);
      _mm512_mask_storeu_ps(scores + p, mask, _mm512_div_ps(_mm512_maskz_loadu_ps(mask, scores + p), divisor));
    }
    lse[r * lse_stride] = top + std::log(sum);
  }
  __m512 acc[R][NV];
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) acc[r][c] = _mm512_setzero_ps();
  for (int p = 0; p < longest; p++) {
    const float* value = values + size_t(p) * stride;
    __m512 v[NV];
    for (int c = 0; c < NV; c++) v[c] = _mm512_loadu_ps(value + 16 * c);
    for (int r = 0; r < R; r++) {
      if (p >= count + r) continue;  // past row r's keys
      const __m512 weight = _mm512_set1_ps(scratch[r * longest + p]);
      for (int c = 0; c < NV; c++) acc[r][c] = _mm512_fmadd_ps(weight, v[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; r++)
    for (int c = 0; c < NV; c++) _mm512_storeu_ps(out + r * q_stride + 16 * c, acc[r][c]);
}

// As many rows at a time as the registers hold (query and out: R · NV vectors beside NV of keys).
constexpr int rows_at_once(int nv) { return nv <= 4 ? 4 : nv <= 8 ? 2 : 1; }

// Blocks of R rows, then the rest one at a time.
template <int NV>
void attention_rows_nv(const float* q, size_t q_stride, const float* keys, const float* values, size_t stride,
                       int count, int rows, float scale, float* out, float* lse, size_t lse_stride, float* scratch) {
  constexpr int R = rows_at_once(NV);
  int r = 0;
  for (; r + R <= rows; r += R)
    attention_rows_d<NV, R>(q + r * q_stride, q_stride, keys, values, stride, count + r, scale, out + r * q_stride,
                            lse + r * lse_stride, lse_stride, scratch);
  for (; r < rows; r++)
    attention_rows_d<NV, 1>(q + r * q_stride, q_stride, keys, values, stride, count + r, scale, out + r * q_stride,
                            lse + r * lse_stride, lse_stride, scratch);
}

// The backward of rows r < R of one head, consecutive in one sequence (row r attends to the first
// count + r keys), in passes that each read a key or value once for all R rows: (1) per row its
// probabilities P from the keys, (2) dP from the values and w = Σ P dP, scores summed as dots16 sums
// them, then dS = P (dP − w) · scale; (3) dq += Σ_p dS_p k_p in the order of p; (4) key by key,
// dk_p += dS_p q, row 0's term first; (5) likewise dv_p += P_p d_out. Every sum runs in the order one
// row at a time gives it (rows one after another add their terms to dk and dv). Each pass holds only
// its own rows' vectors in registers (queries and output gradients together, 2·R·NV of them, spilled
// to the stack in every pass). scratch: 2 · R · (count + R) floats.
template <int NV, int R>
void attention_rows_backward_d(const float* q, const float* d_out, size_t q_stride, const float* keys,
                               const float* values, size_t stride, int count, float scale, const float* lse,
                               size_t lse_stride, float* dq, float* dk, float* dv, float* scratch) {
  const int longest = count + R - 1;
  const auto probabilities = [&](int r) { return scratch + 2 * r * longest; };  // then dP, later dS
  const auto load_rows = [&](const float* rows, __m512 (&out)[R][NV]) {
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NV; c++) out[r][c] = _mm512_loadu_ps(rows + r * q_stride + 16 * c);
  };
  const __m512 scales = _mm512_set1_ps(scale);
  rows_dots16<NV, R>(q, q_stride, keys, stride, count, [&](int r, int p, __mmask16 mask, __m512 sum) {
    const __m512 s = _mm512_mul_ps(sum, scales);
    _mm512_mask_storeu_ps(probabilities(r) + p, mask, exp16(_mm512_sub_ps(s, _mm512_set1_ps(lse[r * lse_stride]))));
  });
  __m512 weighted[R];
  for (int r = 0; r < R; r++) weighted[r] = _mm512_setzero_ps();
  rows_dots16<NV, R>(d_out, q_stride, values, stride, count, [&](int r, int p, __mmask16 mask, __m512 d_probability) {
    _mm512_mask_storeu_ps(probabilities(r) + longest + p, mask, d_probability);
    weighted[r] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(mask, probabilities(r) + p), d_probability, weighted[r],
                                        mask);
  });
  for (int r = 0; r < R; r++) {  // dS_p = P_p (dP_p − w) · scale, over dP
    const __m512 w = _mm512_set1_ps(_mm512_reduce_add_ps(weighted[r]));
    float* probability = probabilities(r);
    float* ds = probability + longest;
    for (int p = 0; p < count + r; p += 16) {
      const __mmask16 mask = first_lanes(count + r - p);
      const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, ds + p), w);
      _mm512_mask_storeu_ps(ds + p, mask, _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mask, probability + p), d), scales));
    }
  }
  {  // (3)
    __m512 d_query[R][NV];
    load_rows(dq, d_query);
    for (int p = 0; p < longest; p++) {
      const float* key = keys + size_t(p) * stride;
      __m512 k[NV];
      for (int c = 0; c < NV; c++) k[c] = _mm512_loadu_ps(key + 16 * c);
      for (int r = 0; r < R; r++) {
        if (p >= count + r) continue;
        const __m512 ds = _mm512_set1_ps(probabilities(r)[longest + p]);
        for (int c = 0; c < NV; c++) d_query[r][c] = _mm512_fmadd_ps(ds, k[c], d_query[r][c]);
      }
    }
    for (int r = 0; r < R; r++)
      for (int c = 0; c < NV; c++) _mm512_storeu_ps(dq + r * q_stride + 16 * c, d_query[r][c]);
  }
  // (4) and (5): out_p += Σ_r weight_r(p) · row_r, key by key.
  const auto outer = [&](const float* rows, int offset, float* out) {
    __m512 row[R][NV];
    load_rows(rows, row);
    for (int p = 0; p < longest; p++) {
      float* o = out + size_t(p) * stride;
      const int first_row = p < count ? 0 : p - count + 1;  // the rows that see key p
      __m512 weight[R];
      for (int r = first_row; r < R; r++) weight[r] = _mm512_set1_ps(probabilities(r)[offset + p]);
      for (int c = 0; c < NV; c++) {
        __m512 sum = _mm512_loadu_ps(o + 16 * c);
        for (int r = first_row; r < R; r++) sum = _mm512_fmadd_ps(weight[r], row[r][c], sum);
        _mm512_storeu_ps(o + 16 * c, sum);
      }
    }
  };
  outer(q, longest, dk);
  outer(d_out, 0, dv);
}

// Blocks of R rows, then the rest one at a time.
template <int NV>
void attention_rows_backward_nv(const float* q, const float* d_out, size_t q_stride, const float* keys,
                                const float* values, size_t stride, int count, int rows, float scale,
                                const float* lse, size_t lse_stride, float* dq, float* dk, float* dv, float* scratch) {
  constexpr int R = rows_at_once(NV);
  int r = 0;
  for (; r + R <= rows; r += R)
    attention_rows_backward_d<NV, R>(q + r * q_stride, d_out + r * q_stride, q_stride, keys, values, stride, count + r,
                                     scale, lse + r * lse_stride, lse_stride, dq + r * q_stride, dk, dv, scratch);
  for (; r < rows; r++)
    attention_rows_backward_d<NV, 1>(q + r * q_stride, d_out + r * q_stride, q_stride, keys, values, stride, count + r,
                                     scale, lse + r * lse_stride, lse_stride, dq + r * q_stride, dk, dv, scratch);
}

template <int... NV>
struct HeadSizes {};

template <int First, int... Rest>
void attention_rows_dispatch(HeadSizes<First, Rest...>, int nv, const float* q, size_t q_stride, const float* keys,
                             const float* values, size_t stride, int count, int rows, float scale, float* out,
                             float* lse, size_t lse_stride, float* scratch) {
  if (nv == First)
    return attention_rows_nv<First>(q, q_stride, keys, values, stride, count, rows, scale, out, lse, lse_stride,
                                    scratch);
  if constexpr (sizeof...(Rest) > 0)
    attention_rows_dispatch(HeadSizes<Rest...>{}, nv, q, q_stride, keys, values, stride, count, rows, scale, out, lse,
                            lse_stride, scratch);
}

template <int First, int... Rest>
void attention_rows_backward_dispatch(HeadSizes<First, Rest...>, int nv, int rows, const float* q,
                                      const float* d_out, size_t q_stride, const float* keys, const float* values,
                                      size_t stride, int count, float scale, const float* lse, size_t lse_stride,
                                      float* dq, float* dk, float* dv, float* scratch) {
  if (nv == First)
    return attention_rows_backward_nv<First>(q, d_out, q_stride, keys, values, stride, count, rows, scale, lse,
                                             lse_stride, dq, dk, dv, scratch);
  if constexpr (sizeof...(Rest) > 0)
    attention_rows_backward_dispatch(HeadSizes<Rest...>{}, nv, rows, q, d_out, q_stride, keys, values, stride, count,
                                     scale, lse, lse_stride, dq, dk, dv, scratch);
}

using AllHeadSizes = HeadSizes<4, 8, 2, 6, 1, 3, 5, 7, 9, 10, 11, 12, 13, 14, 15, 16>;

void attention_rows(const float* q, size_t q_stride, const float* keys, const float* values, size_t stride,
                    int count, int rows, int D, float scale, float* out, float* lse, size_t lse_stride,
                    float* scratch) {
  attention_rows_dispatch(AllHeadSizes{}, D / 16, q, q_stride, keys, values, stride, count, rows, scale, out, lse,
                          lse_stride, scratch);
}

void attention_rows_backward(const float* q, const float* d_out, size_t q_stride, const float* keys,
                             const float* values, size_t stride, int count, int rows, int D, float scale,
                             const float* lse, size_t lse_stride, float* dq, float* dk, float* dv, float* scratch) {
  attention_rows_backward_dispatch(AllHeadSizes{}, D / 16, rows, q, d_out, q_stride, keys, values, stride, count, scale,
                                   lse, lse_stride, dq, dk, dv, scratch);
}

// ---- A few rows: one row of x against up to 16 weight rows ---------------------------------------

// Per output one accumulator, x · w in steps of 16 in order (masked tail), then _mm512_reduce_add_ps:
// the sums dot_tile makes. `load(j, k, mask)`: sixteen values of row j from column k, as
// fp32. Four rows at a time: more streams at once outrun the hardware prefetchers. Where the rows lie
// one after another from `base` (`row_bytes` each), the next four are prefetched a slice per step, so
// that they have arrived when these end (twice the bandwidth of leaving it to the hardware here).
template <typename Load>
inline void row_dots_any(const float* x, size_t n, size_t count, float* out, const Load& load,
                         const uint8_t* base = nullptr, size_t row_bytes = 0) {
  const size_t steps = (n + 15) / 16;
  const size_t lines = (4 * row_bytes + 63) / 64, per_step = (lines + steps - 1) / steps;
  for (size_t j0 = 0; j0 < count; j0 += 4) {
    const size_t rows = std::min<size_t>(4, count - j0);
    const size_t r1 = j0 + (rows > 1 ? 1 : 0), r2 = j0 + (rows > 2 ? 2 : 0), r3 = j0 + (rows > 3 ? 3 : 0);
    const char* next = base ? reinterpret_cast<const char*>(base + (j0 + 4) * row_bytes) : nullptr;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    size_t line = 0;
    for (size_t k = 0; k < n; k += 16) {
      if (next)
        for (const size_t end = std::min(lines, line + per_step); line < end; line++)
          _mm_prefetch(next + line * 64, _MM_HINT_T0);
      const __mmask16 mask = first_lanes(int(std::min<size_t>(16, n - k)));
      const __m512 a = _mm512_maskz_loadu_ps(mask, x + k);
      acc0 = _mm512_fmadd_ps(a, load(j0, k, mask), acc0);
      acc1 = _mm512_fmadd_ps(a, load(r1, k, mask), acc1);
      acc2 = _mm512_fmadd_ps(a, load(r2, k, mask), acc2);
      acc3 = _mm512_fmadd_ps(a, load(r3, k, mask), acc3);
    }
    out[j0] = _mm512_reduce_add_ps(acc0);
    if (rows > 1) out[j0 + 1] = _mm512_reduce_add_ps(acc1);
    if (rows > 2) out[j0 + 2] = _mm512_reduce_add_ps(acc2);
    if (rows > 3) out[j0 + 3] = _mm512_reduce_add_ps(acc3);
  }
}

void row_dots(const float* x, const float* const* w, size_t n, size_t count, float* out) {
  row_dots_any(x, n, count, out, [w](size_t j, size_t k, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, w[j] + k); });
}

void row_dots_bf16(const float* x, const uint16_t* w, size_t stride, size_t n, size_t count, float* out) {
  row_dots_any(
      x, n, count, out,
      [w, stride](size_t j, size_t k, __mmask16 mask) {
        const __m256i half = _mm256_maskz_loadu_epi16(mask, w + j * stride + k);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
      },
      stride == n ? reinterpret_cast<const uint8_t*>(w) : nullptr, 2 * n);
}

// Sixteen NF4 values from eight bytes: codes in element order (high nibble first), looked up in the
// 16-entry table and scaled, as nf4_to_f32 decodes them.
void row_dots_nf4(const float* x, const uint8_t* packed, size_t stride_bytes, const float* scales, size_t block,
                  const float* code, size_t n, size_t count, float* out) {
  const __m512 table = _mm512_loadu_ps(code);
  const size_t blocks = n / block;
  row_dots_any(
      x, n, count, out,
      [&](size_t j, size_t k, __mmask16) {
        const __m128i bytes =
            _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + j * stride_bytes + k / 2)));
        const __m128i codes =
            _mm_or_si128(_mm_srli_epi16(bytes, 4), _mm_slli_epi16(_mm_and_si128(bytes, _mm_set1_epi16(0x0f)), 8));
        const __m512 values = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), table);
        return _mm512_mul_ps(values, _mm512_set1_ps(scales[j * blocks + k / block]));
      },
      stride_bytes * 2 == n ? packed : nullptr, stride_bytes);
}

// ---- Softmax's exponentials -----------------------------------------------------------------------

double exp_sum(const float* x, size_t n, float shift) {
  const __m512 shifts = _mm512_set1_ps(shift);
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    sum0 = _mm512_add_ps(sum0, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), shifts)));
    sum1 = _mm512_add_ps(sum1, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), shifts)));
  }
  for (; i < n; i += 16) {
    const __mmask16 mask = first_lanes(int(std::min<size_t>(16, n - i)));
    sum0 = _mm512_add_ps(sum0, _mm512_maskz_mov_ps(mask, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), shifts))));
  }
  return double(_mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1)));
}

void exp_scaled(const float* x, size_t n, float shift, float scale, float* out) {
  const __m512 shifts = _mm512_set1_ps(shift), scales = _mm512_set1_ps(scale);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 mask = first_lanes(int(std::min<size_t>(16, n - i)));
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), shifts));
    _mm512_mask_storeu_ps(out + i, mask, _mm512_mul_ps(e, scales));
  }
}

// ---- bf16 products (AVX-512 BF16) ---------------------------------------------------------------
// Compiled for AVX-512 BF16 function by function, so that nothing else in this file needs it; the
// table that points here is chosen only where the CPU has it (dispatch.cc). vdpbf16ps adds the two
// products of a pair of bf16 values (exact in fp32) to each fp32 lane.
#define TUNEKIT_BF16 __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

TUNEKIT_BF16 inline __m512bh as_bf16(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// Round to nearest even (vcvtneps2bf16), sixteen at a time with a masked tail.
TUNEKIT_BF16 void f32_to_bf16(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 mask = n - i >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256bh half = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + i));
    _mm256_mask_storeu_epi16(dst + i, mask, reinterpret_cast<__m256i>(half));
  }
}

// gemm_tile's 8 × 48 accumulated tile on pairs of k: a [pairs][8][2], b [pairs][48][2]; ROWS of the
// eight computed (a decoding step's one row costs one row's products, not eight).
template <size_t ROWS>
TUNEKIT_BF16 void bf16_gemm_tile_rows(size_t pairs, const uint16_t* a, const uint16_t* b, float* c, size_t ldc,
                                      size_t cols, bool accumulate) {
  __mmask16 mask[kTileVectors];
  tile_masks(cols, mask);
  __m512 acc[ROWS][kTileVectors];
  for (size_t i = 0; i < ROWS; i++)
    for (size_t v = 0; v < kTileVectors; v++) acc[i][v] = load_row(c + i * ldc + 16 * v, mask[v], accumulate);
  for (size_t p = 0; p < pairs; p++, a += 2 * kTileRows, b += 2 * kTileCols) {
    const __m512bh b0 = as_bf16(_mm512_loadu_si512(b)), b1 = as_bf16(_mm512_loadu_si512(b + 32));
    const __m512bh b2 = as_bf16(_mm512_loadu_si512(b + 64));
    for (size_t i = 0; i < ROWS; i++) {
      int32_t pair;
      __builtin_memcpy(&pair, a + 2 * i, 4);
      const __m512bh value = as_bf16(_mm512_set1_epi32(pair));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], value, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], value, b1);
      acc[i][2] = _mm512_dpbf16_ps(acc[i][2], value, b2);
    }
  }
  for (size_t i = 0; i < ROWS; i++)  // constant indices keep acc in registers
    for (size_t v = 0; v < kTileVectors; v++) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

TUNEKIT_BF16 void bf16_gemm_tile(size_t pairs, const uint16_t* a, const uint16_t* b, float* c, size_t ldc, size_t rows,
                                 size_t cols, bool accumulate) {
  switch (rows) {
    case 1: return bf16_gemm_tile_rows<1>(pairs, a, b, c, ldc, cols, accumulate);
    case 2: return bf16_gemm_tile_rows<2>(pairs, a, b, c, ldc, cols, accumulate);
    case 3: return bf16_gemm_tile_rows<3>(pairs, a, b, c, ldc, cols, accumulate);
    case 4: return bf16_gemm_tile_rows<4>(pairs, a, b, c, ldc, cols, accumulate);
    case 5: return bf16_gemm_tile_rows<5>(pairs, a, b, c, ldc, cols, accumulate);
    case 6: return bf16_gemm_tile_rows<6>(pairs, a, b, c, ldc, cols, accumulate);
    case 7: return bf16_gemm_tile_rows<7>(pairs, a, b, c, ldc, cols, accumulate);
    default: return bf16_gemm_tile_rows<8>(pairs, a, b, c, ldc, cols, accumulate);
  }
}

// Sixteen rows' sixteen pairs (r[j]: row j's 32-bit words) transposed in registers: p[l] holds pair l
// of the sixteen rows (unpack 32, unpack 64, two rounds of 128-bit shuffles).
inline void transpose16(__m512i* r, __m512i* p) {
  __m512i t[16];
  for (size_t j = 0; j < 16; j += 2) {
    t[j] = _mm512_unpacklo_epi32(r[j], r[j + 1]);
    t[j + 1] = _mm512_unpackhi_epi32(r[j], r[j + 1]);
  }
  for (size_t j = 0; j < 16; j += 4) {
    r[j] = _mm512_unpacklo_epi64(t[j], t[j + 2]);
    r[j + 1] = _mm512_unpackhi_epi64(t[j], t[j + 2]);
    r[j + 2] = _mm512_unpacklo_epi64(t[j + 1], t[j + 3]);
    r[j + 3] = _mm512_unpackhi_epi64(t[j + 1], t[j + 3]);
  }
  // r[4g + s] now holds, in 128-bit lane L, pair 4L + s of rows 4g … 4g + 3.
  for (size_t s = 0; s < 4; s++) {
    t[s] = _mm512_shuffle_i32x4(r[s], r[4 + s], 0x44);  // lanes 0, 1 of rows 0-3 and 4-7
    t[4 + s] = _mm512_shuffle_i32x4(r[s], r[4 + s], 0xee);  // lanes 2, 3
    t[8 + s] = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0x44);
    t[12 + s] = _mm512_shuffle_i32x4(r[8 + s], r[12 + s], 0xee);
  }
  for (size_t s = 0; s < 4; s++) {  // pairs s, 4 + s, 8 + s, 12 + s of all sixteen rows
    p[s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0x88);
    p[4 + s] = _mm512_shuffle_i32x4(t[s], t[8 + s], 0xdd);
    p[8 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0x88);
    p[12 + s] = _mm512_shuffle_i32x4(t[4 + s], t[12 + s], 0xdd);
  }
}

// Pairs [q0, q0 + 16) of rows[j < count] (zero past `pairs` and for j ≥ count), transposed.
inline void load_transposed(const uint16_t* const* rows, size_t count, size_t q0, size_t pairs, __m512i* p) {
  const size_t left = std::min<size_t>(16, pairs - q0);
  const __mmask16 mask = static_cast<__mmask16>(left >= 16 ? 0xffff : (1u << left) - 1);
  __m512i r[16];
  for (size_t j = 0; j < 16; j++)
    r[j] = j < count ? _mm512_maskz_loadu_epi32(mask, rows[j] + 2 * q0) : _mm512_setzero_si512();
  transpose16(r, p);
}

// out[q * out_stride + j] = the q-th pair (32-bit word) of rows[j], for j < count ≤ 16 and q < pairs.
void bf16_transpose_pairs(const uint16_t* const* rows, size_t count, size_t pairs, uint32_t* out, size_t out_stride) {
  const __mmask16 columns = static_cast<__mmask16>(count >= 16 ? 0xffff : (1u << count) - 1);
  for (size_t q0 = 0; q0 < pairs; q0 += 16) {
    __m512i p[16];
    load_transposed(rows, count, q0, pairs, p);
    for (size_t l = 0; l < 16 && q0 + l < pairs; l++) _mm512_mask_storeu_epi32(out + (q0 + l) * out_stride, columns, p[l]);
  }
}

// A few rows of x against sixteen weight rows without a panel: the rows' pairs transposed in registers
// and met by each x row's pair in k order, the sums bf16_gemm_tile makes. The next rows are prefetched
// a slice a step when `next` is given.
template <size_t ROWS>
TUNEKIT_BF16 void bf16_row_dots_rows(const uint32_t* x, size_t x_stride, const uint16_t* const* w, size_t count,
                                     size_t pairs, float* out, size_t out_stride, const char* next, size_t next_bytes) {
  __m512 acc[ROWS];
  for (size_t i = 0; i < ROWS; i++) acc[i] = _mm512_setzero_ps();
  const size_t steps = (pairs + 15) / 16, lines = (next_bytes + 63) / 64, per_step = (lines + steps - 1) / steps;
  size_t line = 0;
  for (size_t q0 = 0; q0 < pairs; q0 += 16) {
    if (next)
      for (const size_t end = std::min(lines, line + per_step); line < end; line++)
        _mm_prefetch(next + line * 64, _MM_HINT_T0);
    __m512i p[16];
    load_transposed(w, count, q0, pairs, p);
    const size_t left = std::min<size_t>(16, pairs - q0);
    for (size_t l = 0; l < left; l++)
      for (size_t i = 0; i < ROWS; i++)
        acc[i] = _mm512_dpbf16_ps(acc[i], as_bf16(_mm512_set1_epi32(int(x[i * x_stride + q0 + l]))), as_bf16(p[l]));
  }
  const __mmask16 columns = static_cast<__mmask16>(count >= 16 ? 0xffff : (1u << count) - 1);
  for (size_t i = 0; i < ROWS; i++) _mm512_mask_storeu_ps(out + i * out_stride, columns, acc[i]);
}

TUNEKIT_BF16 void bf16_row_dots(const uint32_t* x, size_t x_stride, size_t rows, const uint16_t* const* w,
                                size_t count, size_t pairs, float* out, size_t out_stride, const char* next,
                                size_t next_bytes) {
  switch (rows) {
    case 1: return bf16_row_dots_rows<1>(x, x_stride, w, count, pairs, out, out_stride, next, next_bytes);
    case 2: return bf16_row_dots_rows<2>(x, x_stride, w, count, pairs, out, out_stride, next, next_bytes);
    case 3: return bf16_row_dots_rows<3>(x, x_stride, w, count, pairs, out, out_stride, next, next_bytes);
    default: return bf16_row_dots_rows<4>(x, x_stride, w, count, pairs, out, out_stride, next, next_bytes);
  }
}

// n NF4 values (two per byte, high nibble first) in blocks of `block` (a multiple of 16), the first at
// `offset` (a multiple of 16) in its block, value k scaled by scales[(offset + k) / block], as bf16:
// each value code · scale in fp32 (as nf4_to_f32 decodes it), then rounded.
TUNEKIT_BF16 void nf4_to_bf16(const uint8_t* packed, const float* scales, size_t offset, size_t block,
                              const float* code, size_t n, uint16_t* out) {
  const __m512 table = _mm512_loadu_ps(code);
  for (size_t k = 0; k < n; k += 16) {
    const __m128i bytes = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + k / 2)));
    const __m128i codes =
        _mm_or_si128(_mm_srli_epi16(bytes, 4), _mm_slli_epi16(_mm_and_si128(bytes, _mm_set1_epi16(0x0f)), 8));
    const __m512 values = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), table),
                                        _mm512_set1_ps(scales[(offset + k) / block]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(values)));
  }
}

// out[j] = even[j] | odd[j] << 16: two rows of bf16 interleaved into pairs.
void bf16_interleave(const uint16_t* even, const uint16_t* odd, size_t n, uint32_t* out) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 mask = static_cast<__mmask16>(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
    const __m512i low = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, even + i));
    const __m512i high = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, odd + i));
    _mm512_mask_storeu_epi32(out + i, mask, _mm512_or_si512(low, _mm512_slli_epi32(high, 16)));
  }
}

// ---- SwiGLU --------------------------------------------------------------------------------------

void swiglu(const float* gate, const float* up, size_t n, float* act) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 mask = first_lanes(int(std::min<size_t>(16, n - i)));
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(act + i, mask,
                          _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(mask, up + i)));
  }
}

void swiglu_backward(const float* d_act, const float* gate, const float* up, size_t n, float* d_gate, float* d_up) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 mask = first_lanes(int(std::min<size_t>(16, n - i)));
    const __m512 g = _mm512_maskz_loadu_ps(mask, gate + i), d = _mm512_maskz_loadu_ps(mask, d_act + i);
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), g))));
    _mm512_mask_storeu_ps(d_up + i, mask, _mm512_mul_ps(_mm512_mul_ps(d, g), sg));
    const __m512 rest = _mm512_add_ps(one, _mm512_mul_ps(g, _mm512_sub_ps(one, sg)));
    _mm512_mask_storeu_ps(d_gate + i, mask,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, _mm512_maskz_loadu_ps(mask, up + i)), sg), rest));
  }
}

constexpr Kernels kAvx512 = {"avx512",   dot,       f16_to_f32, bf16_to_f32, axpy, axpy4, nf4_to_f32,
                             kDotRows,   kDotCols,  dot_tile, kTileRows,  kTileCols,   128,  gemm_tile,
                             dropout_mask, dropout_apply, attention_head_dim, attention_rows, attention_rows_backward,
                             row_dots,     row_dots_bf16,      row_dots_nf4,  swiglu,      swiglu_backward,
                             exp_sum,      exp_scaled,
                             nullptr,      nullptr,            nullptr,       0,           nullptr,
                             nullptr,      nullptr};

// The same with the bf16 products, for CPUs with AVX-512 BF16 (k blocks of 256: a [128][48][2] panel
// of b is the 24 KB of L1 that fp32's 128 deep one is).
constexpr Kernels with_bf16(Kernels k) {
  k.f32_to_bf16 = f32_to_bf16;
  k.bf16_transpose_pairs = bf16_transpose_pairs;
  k.bf16_interleave = bf16_interleave;
  k.bf16_kc = 256;
  k.bf16_gemm_tile = bf16_gemm_tile;
  k.bf16_row_dots = bf16_row_dots;
  k.nf4_to_bf16 = nf4_to_bf16;
  return k;
}
constexpr Kernels kAvx512Bf16 = with_bf16(kAvx512);

}  // namespace

const Kernels& avx512_kernels(bool bf16) { return bf16 ? kAvx512Bf16 : kAvx512; }

}  // namespace tunekit

#if defined(__clang__)
#pragma clang attribute pop
#endif
