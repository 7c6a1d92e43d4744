// The scalar reference kernels: plain loops in a fixed order, the definition every SIMD path is
// tested against.
#include <cstring>

#include "kernels/kernels.h"

namespace tunekit {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::NF4: return "NF4";
  }
  return "?";
}

// IEEE 754 binary16 → binary32, subnormals and infinities included.
float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400) == 0) {
        mantissa <<= 1;
        exponent--;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ff) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, 4);
  return value;
}

namespace {

float dot(const float* a, const float* b, size_t n) {
  float sum = 0.0f;
  for (size_t i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

void f16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = half_to_float(src[i]);
}

void bf16_to_f32(const uint16_t* src, float* dst, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(src[i]);
}

void axpy(float a, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void axpy4(const float* a, const float* const* x, float* y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] += a[0] * x[0][i] + a[1] * x[1][i] + a[2] * x[2][i] + a[3] * x[3][i];
}

void nf4_to_f32(const uint8_t* packed, size_t pairs, float scale, const float* code, float* out) {
  for (size_t i = 0; i < pairs; i++) {
    out[2 * i] = code[packed[i] >> 4] * scale;
    out[2 * i + 1] = code[packed[i] & 0x0f] * scale;
  }
}

// Forward tiles are dot products as dot computes them.
void dot_tile(const float* x, size_t x_stride, const float* const* w, size_t n, float* out, size_t out_stride,
              size_t rows, size_t cols) {
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++) out[i * out_stride + j] = dot(x + i * x_stride, w[j], n);
}

void row_dots(const float* x, const float* const* w, size_t n, size_t count, float* out) {
  for (size_t j = 0; j < count; j++) out[j] = dot(x, w[j], n);
}

// A 4 × 8 accumulated tile in plain loops: products are added four steps of k at a time, as axpy4
// adds four rows (then one at a time for the last kc % 4, as axpy).
constexpr size_t kTileRows = 4, kTileCols = 8;

void gemm_tile(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t rows, size_t cols) {
  float acc[kTileRows][kTileCols] = {};
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++) acc[i][j] = c[i * ldc + j];
  size_t k = 0;
  for (; k + 4 <= kc; k += 4, a += 4 * kTileRows, b += 4 * kTileCols)
    for (size_t i = 0; i < kTileRows; i++)
      for (size_t j = 0; j < kTileCols; j++)
        acc[i][j] += a[i] * b[j] + a[kTileRows + i] * b[kTileCols + j] + a[2 * kTileRows + i] * b[2 * kTileCols + j] +
                     a[3 * kTileRows + i] * b[3 * kTileCols + j];
  for (; k < kc; k++, a += kTileRows, b += kTileCols)
    for (size_t i = 0; i < kTileRows; i++)
      for (size_t j = 0; j < kTileCols; j++) acc[i][j] += a[i] * b[j];
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < cols; j++) c[i * ldc + j] = acc[i][j];
}

const Kernels kScalar = {"scalar",  dot,       f16_to_f32, bf16_to_f32, axpy,     axpy4, nf4_to_f32,
                         4,         4,         dot_tile,  kTileRows,  kTileCols,   256,      gemm_tile,
                         dropout_mask_reference, dropout_apply_reference, nullptr, nullptr, nullptr, row_dots, nullptr, nullptr, nullptr, nullptr,
                         nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr, nullptr, nullptr};

}  // namespace

void dropout_mask_reference(uint64_t key, uint64_t first, size_t n, uint64_t threshold, float kept, const float* x,
                            uint8_t* bits, float* dropped) {
  for (size_t i = 0; i < n; i++) {
    const bool keep = splitmix64_mix(key + (first + i + 1) * kSplitMixGamma) >= threshold;
    dropped[i] = x[i] * (keep ? kept : 0.0f);
    if (!bits) continue;
    if (i % 8 == 0) bits[i / 8] = 0;
    bits[i / 8] = uint8_t(bits[i / 8] | unsigned(keep) << (i % 8));
  }
}

void dropout_apply_reference(const uint8_t* bits, size_t offset, size_t n, float kept, const float* x, float* out,
                             bool accumulate) {
  for (size_t i = 0; i < n; i++) {
    const size_t bit = offset + i;
    const float value = x[i] * ((bits[bit / 8] >> (bit % 8) & 1) ? kept : 0.0f);
    out[i] = accumulate ? out[i] + value : value;
  }
}

const Kernels& scalar_kernels() { return kScalar; }

}  // namespace tunekit
