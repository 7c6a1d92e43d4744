#include "kernels/nf4.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "util/error.h"

namespace tunekit {

// bitsandbytes functional.py get_4bit_type("nf4") (the normal-float code of the QLoRA paper).
const float kNF4Code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// The decision tree of csrc/kernels.cu dQuantizeNF4: each threshold is the midpoint of two
// neighbouring code values, and a value exactly on a threshold goes to the lower code.
uint8_t nf4_index(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 15 : 14;
      return x > 0.5016634166240692f ? 13 : 12;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 11 : 10;
    return x > 0.1202552504837513f ? 9 : 8;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 7 : 6;
    return x > -0.23460740596055984f ? 5 : 4;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 3 : 2;
  return x > -0.8480964004993439f ? 1 : 0;
}

namespace {

// torch.linspace(start, end, steps, dtype=float32) as ATen computes it on the CPU: the first half
// forward from start, the second half backward from end, in float arithmetic.
std::vector<float> linspace_f32(float start, float end, int steps) {
  std::vector<float> out(steps);
  const float step = (end - start) / float(steps - 1);
  const int halfway = steps / 2;
  for (int i = 0; i < steps; i++)
    out[i] = i < halfway ? start + step * float(i) : end - step * float(steps - i - 1);
  return out;
}

std::vector<float> make_dynamic_map_signed() {
  const int max_exponent_bits = 7, total_bits = 8, non_sign_bits = total_bits - 1;
  std::vector<float> data;
  for (int i = 0; i < max_exponent_bits; i++) {
    const int fraction_items = (1 << (i + non_sign_bits - max_exponent_bits)) + 1;
    std::vector<float> boundaries = linspace_f32(0.1f, 1.0f, fraction_items);
    // torch multiplies a float32 tensor by a Python float in float32 arithmetic.
    const float scale = float(std::pow(10.0, -(max_exponent_bits - 1) + i));
    for (int j = 0; j + 1 < fraction_items; j++) {
      const float mean = (boundaries[j] + boundaries[j + 1]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return data;
}

// Index of the nearest value of a sorted code (ties to the lower index).
uint8_t nearest_code(const std::vector<float>& code, float x) {
  auto upper = std::lower_bound(code.begin(), code.end(), x);
  if (upper == code.begin()) return 0;
  if (upper == code.end()) return uint8_t(code.size() - 1);
  auto lower = upper - 1;
  return uint8_t((x - *lower) <= (*upper - x) ? lower - code.begin() : upper - code.begin());
}

}  // namespace

const std::vector<float>& dynamic_map_signed() {
  static const std::vector<float> map = make_dynamic_map_signed();
  return map;
}

float NF4Tensor::block_absmax(size_t block) const {
  if (!double_quant) return absmax[block];
  return dynamic_map_signed()[absmax_codes[block]] * absmax_scales[block / 256] + absmax_offset;
}

void NF4Tensor::dequantize(size_t start, size_t count, float* out, const Kernels& kernels) const {
  size_t i = start;
  const size_t end = start + count;
  auto one = [&](size_t index, float scale) {
    const uint8_t byte = packed[index >> 1];
    *out++ = kNF4Code[(index & 1) ? (byte & 0x0f) : (byte >> 4)] * scale;
  };
  while (i < end) {
    const size_t block = i / block_size;
    const size_t block_end = std::min(end, (block + 1) * block_size);
    const float scale = block_absmax(block);
    if (i & 1) one(i++, scale);  // a span starting mid-byte
    const size_t pairs = (block_end - i) / 2;
    kernels.nf4_to_f32(packed.data() + (i >> 1), pairs, scale, kNF4Code, out);
    out += 2 * pairs;
    i += 2 * pairs;
    if (i < block_end) one(i++, scale);
  }
}

NF4Tensor quantize_nf4(const float* values, size_t length, size_t block_size, bool double_quant) {
  if (block_size == 0 || block_size % 2 != 0) throw Error(ErrorCode::InvalidArgument, "NF4 block size must be even and > 0");
  NF4Tensor tensor;
  tensor.length = length;
  tensor.block_size = block_size;
  tensor.packed.assign((length + 1) / 2, 0);
  tensor.absmax.resize(tensor.blocks());
  for (size_t block = 0; block < tensor.blocks(); block++) {
    const size_t begin = block * block_size, end = std::min(length, begin + block_size);
    float absmax = 0.0f;
    for (size_t i = begin; i < end; i++) absmax = std::max(absmax, std::fabs(values[i]));
    tensor.absmax[block] = absmax;
    // bitsandbytes multiplies by the reciprocal; an all-zero block keeps code 7 (0.0).
    const float inverse = absmax > 0.0f ? 1.0f / absmax : 0.0f;
    for (size_t i = begin; i < end; i++) {
      const uint8_t index = absmax > 0.0f ? nf4_index(values[i] * inverse) : 7;
      tensor.packed[i >> 1] |= (i & 1) ? index : uint8_t(index << 4);
    }
  }
  if (double_quant) {
    const std::vector<float>& code = dynamic_map_signed();
    double sum = 0.0;
    for (float value : tensor.absmax) sum += value;
    // torch's mean of a float32 tensor, rounded to float32.
    tensor.absmax_offset = float(sum / double(tensor.absmax.size()));
    const size_t n = tensor.absmax.size();
    tensor.absmax_codes.resize(n);
    tensor.absmax_scales.resize((n + 255) / 256);
    for (size_t block = 0; block < tensor.absmax_scales.size(); block++) {
      const size_t begin = block * 256, end = std::min(n, begin + 256);
      float scale = 0.0f;
      for (size_t i = begin; i < end; i++) scale = std::max(scale, std::fabs(tensor.absmax[i] - tensor.absmax_offset));
      tensor.absmax_scales[block] = scale;
      const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
      for (size_t i = begin; i < end; i++)
        tensor.absmax_codes[i] = nearest_code(code, (tensor.absmax[i] - tensor.absmax_offset) * inverse);
    }
    tensor.absmax.clear();
    tensor.absmax.shrink_to_fit();
    tensor.double_quant = true;
  }
  return tensor;
}

}  // namespace tunekit
