// NF4 as bitsandbytes stores it (bitsandbytes/functional.py quantize_4bit, csrc/kernels.cu
// kQuantizeBlockwise / dQuantizeNF4 / dDequantizeNF4): blocks of `block_size` consecutive values of
// the flattened tensor share one absmax; each value becomes the index of the nearest of 16 code
// values after scaling by 1/absmax; two codes per byte, the first element in the high nibble.
// With double quantization, the absmax values minus their mean are quantized again with the signed
// 8-bit dynamic map in blocks of 256 (functional.py quantize_blockwise, create_dynamic_map).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"

namespace tunekit {

extern const float kNF4Code[16];

// The code index nearest to x (x already scaled into [-1, 1]), with bitsandbytes' thresholds.
uint8_t nf4_index(float x);

// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted values.
const std::vector<float>& dynamic_map_signed();

struct NF4Tensor {
  size_t length = 0;
  size_t block_size = 64;
  std::vector<uint8_t> packed;   // ceil(length / 2) bytes
  std::vector<float> absmax;     // one per block (when not double-quantized)
  // Double quantization of the absmax values.
  bool double_quant = false;
  float absmax_offset = 0.0f;          // the mean subtracted before quantizing
  std::vector<uint8_t> absmax_codes;   // indices into dynamic_map_signed()
  std::vector<float> absmax_scales;    // one per 256 absmax values

  size_t blocks() const { return (length + block_size - 1) / block_size; }
  size_t bytes() const {
    return packed.size() + absmax.size() * 4 + absmax_codes.size() + absmax_scales.size() * 4;
  }
  // The absmax of block b, dequantized when double-quantized.
  float block_absmax(size_t block) const;
  // Decode values [start, start + count) of the flattened tensor into out.
  void dequantize(size_t start, size_t count, float* out, const Kernels& kernels = scalar_kernels()) const;
};

// values: `length` floats produced one at a time by `value(i)`; the source may be any dtype.
NF4Tensor quantize_nf4(const float* values, size_t length, size_t block_size, bool double_quant);

}  // namespace tunekit
