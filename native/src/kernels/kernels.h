// The kernel interface: the few inner loops that dominate the engine's time. Each instruction set
// (scalar reference, AVX2, AVX-512) provides one table; the engine picks one at run time from the
// CPU's features (or TUNEKIT_CPU), so one binary runs on any x86-64. A future CUDA backend plugs in
// behind the same seam.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tunekit {

enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, NF4 = 3 };

const char* dtype_name(DType dtype);

struct Kernels {
  const char* name;
  // sum_i a[i] * b[i], accumulated in fp32.
  float (*dot)(const float* a, const float* b, size_t n);
  // dst[i] = float(src[i]) for IEEE half and bfloat16 sources.
  void (*f16_to_f32)(const uint16_t* src, float* dst, size_t n);
  void (*bf16_to_f32)(const uint16_t* src, float* dst, size_t n);
  // y[i] += a * x[i]
  void (*axpy)(float a, const float* x, float* y, size_t n);
  // y[i] += a[0] x[0][i] + a[1] x[1][i] + a[2] x[2][i] + a[3] x[3][i]: one pass over y for four rows.
  void (*axpy4)(const float* a, const float* const* x, float* y, size_t n);
  // Decodes 2 * pairs NF4 values, two per byte (high nibble first), all scaled by `scale`:
  // out[2i] = code[packed[i] >> 4] * scale, out[2i + 1] = code[packed[i] & 15] * scale.
  void (*nf4_to_f32)(const uint8_t* packed, size_t pairs, float scale, const float* code, float* out);

  // The register tiles of the matrix products in kernels/gemm.cc (batches of kGemmRows rows on).
  // Each element is summed in an order fixed by its own row and column alone, the order of the
  // few-row path (row_dots), so results do not depend on how a product is cut into tiles, blocks or
  // threads, nor on how many rows a batch has.
  //
  // Forward, y = x Wᵀ: out[i * out_stride + j] = x row i (x + i * x_stride) · w[j], n long, for
  // i < rows ≤ dot_rows and j < cols ≤ dot_cols (w[j] for j ≥ cols may repeat): on the SIMD paths
  // one vector accumulator per element over the vector-wide steps of n in order, then its lanes
  // summed in a fixed tree (AVX-512: as _mm512_reduce_add_ps); on the scalar path dot's plain loop.
  size_t dot_rows, dot_cols;
  void (*dot_tile)(const float* x, size_t x_stride, const float* const* w, size_t n, float* out, size_t out_stride,
                   size_t rows, size_t cols);
  // Accumulated, dx += dy W: a holds gemm_mr rows interleaved ([kc][gemm_mr]), b gemm_nr columns
  // ([kc][gemm_nr]), both packed and zero-padded; for i < rows, j < cols,
  //   c[i * ldc + j] += a[0][i]·b[0][j] + a[1][i]·b[1][j] + …, in k order: one fused multiply-add
  // at a time on the SIMD paths, as their axpy and axpy4 add rows; four products at a time on the
  // scalar path, as its axpy4 does. gemm_kc (a multiple of 4): the depth of a block of b that stays
  // in L1 while a column of tiles runs against it.
  size_t gemm_mr, gemm_nr, gemm_kc;
  void (*gemm_tile)(size_t kc, const float* a, const float* b, float* c, size_t ldc, size_t rows, size_t cols);

  // Dropout, drawn by counter rather than in sequence: elements [first, first + n) of the mask keyed
  // `key`. Element e is dropped when splitmix64's output for e, mix(key + (e + 1) γ), is below
  // `threshold` (p · 2⁶⁴), else kept and scaled by `kept` (1 / (1 − p)): dropped[i] = x[i] · (kept or
  // 0). The mask is kept as bits, a 32nd of the floats it once was: element first + i is bit i % 8 of
  // bits[i / 8], 1 when kept (a last partial byte's other bits 0; bits null: not kept). Integer
  // arithmetic decides, so every path gives the same bits, and any cut of a mask into ranges
  // (threads) the same mask.
  void (*dropout_mask)(uint64_t key, uint64_t first, size_t n, uint64_t threshold, float kept, const float* x,
                       uint8_t* bits, float* dropped);
  // A kept mask applied again: out[i] = x[i] · (kept or 0) as bit offset + i of `bits` says (the
  // product dropout_mask gave), or with `accumulate` out[i] += it. bits must be readable through the
  // 4 bytes after the byte of bit offset + n − 1.
  void (*dropout_apply)(const uint8_t* bits, size_t offset, size_t n, float kept, const float* x, float* out,
                        bool accumulate);

  // Attention on one head, for head sizes D with attention_head_dim(D) true (the generic loops of
  // ops.cc serve the others, and the paths where these are null). Keys and values are D floats each,
  // `stride` floats apart.
  //
  // Forward of `rows` consecutive query rows of one sequence: row r (q + r · q_stride, out likewise,
  // lse[r · lse_stride]) attends to the first count + r keys: s_p = (q · k_p) · scale,
  // out = Σ_p (e^(s_p − max) / Σ e) v_p, lse = the log-sum-exp. Each row is computed as it would be
  // alone (its scores summed in one order whatever the count, the softmax and out in the order of p),
  // so a row alone and the same row in a batch give the same bits; the rows share only the loads.
  // `scratch`: room for 4 · (count + rows) floats.
  bool (*attention_head_dim)(int D);
  void (*attention_rows)(const float* q, size_t q_stride, const float* keys, const float* values, size_t stride,
                         int count, int rows, int D, float scale, float* out, float* lse, size_t lse_stride,
                         float* scratch);
  // Backward of `rows` consecutive query rows of one head in one sequence, given their log-sum-exps:
  // row r (q + r · q_stride, d_out and dq likewise, lse[r · lse_stride]) attends to the first
  // count + r keys. Per row P_p = e^(s_p − lse), dP_p = d_out · v_p, w = Σ P dP,
  // dS_p = P_p (dP_p − w) · scale; dq += Σ_p dS_p k_p in the order of p, and for each p dk_p += dS_p q,
  // dv_p += P_p d_out, the rows' terms in row order (dk and dv rows `stride` apart, as the keys): the
  // sums the rows one after another give, whatever the kernel does at once. `scratch`: room for
  // 8 · (count + rows + 4) floats.
  void (*attention_rows_backward)(const float* q, const float* d_out, size_t q_stride, const float* keys,
                                  const float* values, size_t stride, int count, int rows, int D, float scale,
                                  const float* lse, size_t lse_stride, float* dq, float* dk, float* dv,
                                  float* scratch);
  // A few rows (decoding): one row of x (n floats) against `count` ≤ 16 rows of a weight, out[j] = the
  // sum dot_tile gives x · w_j, in its order, so that a row gets the same bits alone as among many.
  // F32 rows by pointer (every path); BF16 rows `stride` values apart and NF4 rows (null where a path
  // has none: the rows are decoded to fp32 first). NF4: rows of n codes, two per byte, high nibble
  // first, `stride_bytes` apart, in blocks of `block` values (a multiple of 16 dividing n) scaled by
  // scales[j * (n / block) + b]; `code` the 16 code values.
  void (*row_dots)(const float* x, const float* const* w, size_t n, size_t count, float* out);
  void (*row_dots_bf16)(const float* x, const uint16_t* w, size_t stride, size_t n, size_t count, float* out);
  void (*row_dots_nf4)(const float* x, const uint8_t* packed, size_t stride_bytes, const float* scales, size_t block,
                       const float* code, size_t n, size_t count, float* out);

  // SwiGLU's activation, as ops::swiglu and ops::swiglu_backward define it, n values (null: their
  // scalar loops). The exponential may differ from std::exp in the last bits.
  void (*swiglu)(const float* gate, const float* up, size_t n, float* act);
  void (*swiglu_backward)(const float* d_act, const float* gate, const float* up, size_t n, float* d_gate,
                          float* d_up);

  // Softmax's exponentials over a row of logits (null: std::exp in double): exp_sum returns
  // Σ exp(x[i] − shift), exp_scaled writes out[i] = exp(x[i] − shift) · scale (out may be x). The
  // exponential may differ from std::exp in the last bits; the sums are fp32 lanes, then reduced.
  double (*exp_sum)(const float* x, size_t n, float shift);
  void (*exp_scaled)(const float* x, size_t n, float shift, float scale, float* out);

  // bf16 products (computeDtype "bf16"): inputs rounded to bf16 once, products summed in fp32. Null
  // where the CPU lacks AVX-512 BF16; models then compute in fp32.
  // f32_to_bf16 rounds to nearest even (vcvtneps2bf16).
  void (*f32_to_bf16)(const float* src, uint16_t* dst, size_t n);
  // Packing: out[q * out_stride + j] = the q-th pair (32-bit word) of rows[j], j < count ≤ 16,
  // q < pairs (a block of weight rows as columns of a panel); out[j] = even[j] | odd[j] << 16 (two
  // rows of k as pairs).
  void (*bf16_transpose_pairs)(const uint16_t* const* rows, size_t count, size_t pairs, uint32_t* out,
                               size_t out_stride);
  void (*bf16_interleave)(const uint16_t* even, const uint16_t* odd, size_t n, uint32_t* out);
  // gemm_tile's gemm_mr × gemm_nr tile on `pairs` steps of two k: a packed [pairs][mr][2] and b
  // [pairs][nr][2] bf16, zero-padded; c[i * ldc + j] (+)= the products in k order, each pair's two
  // added to the fp32 sum (vdpbf16ps), from c's value when `accumulate`, else from zero. bf16_kc (even):
  // its block depth.
  size_t bf16_kc;
  void (*bf16_gemm_tile)(size_t pairs, const uint16_t* a, const uint16_t* b, float* c, size_t ldc, size_t rows,
                         size_t cols, bool accumulate);
  // A few rows (decoding) without packing: x holds `rows` ≤ 4 rows of pairs (bf16 rounded, 32-bit
  // words, x_stride words apart), w `count` ≤ 16 weight rows of `pairs` pairs; out[i * out_stride + j]
  // = row i · w_j, summed as bf16_gemm_tile sums it (pair by pair in k order from zero), so that a
  // row gets the same bits here as in a blocked product. `next` (or null): next_bytes to prefetch.
  void (*bf16_row_dots)(const uint32_t* x, size_t x_stride, size_t rows, const uint16_t* const* w, size_t count,
                        size_t pairs, float* out, size_t out_stride, const char* next, size_t next_bytes);
  // n NF4 values (a multiple of 16; two per byte, high nibble first) in blocks of `block` (a multiple
  // of 16), the first at `offset` (a multiple of 16) in its block, value k scaled by
  // scales[(offset + k) / block]: decoded as nf4_to_f32 decodes them, then rounded to bf16.
  void (*nf4_to_bf16)(const uint8_t* packed, const float* scales, size_t offset, size_t block, const float* code,
                      size_t n, uint16_t* out);
  bool has_bf16() const { return bf16_gemm_tile != nullptr; }
};

// splitmix64 (Steele, Lea and Flood 2014; Vigna's constants): its increment and output function.
constexpr uint64_t kSplitMixGamma = 0x9e3779b97f4a7c15ull;
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The scalar dropout_mask and dropout_apply, which the SIMD paths without 64-bit vector multiplies share.
void dropout_apply_reference(const uint8_t* bits, size_t offset, size_t n, float kept, const float* x, float* out,
                             bool accumulate);
void dropout_mask_reference(uint64_t key, uint64_t first, size_t n, uint64_t threshold, float kept, const float* x,
                            uint8_t* bits, float* dropped);

const Kernels& scalar_kernels();
#ifdef TUNEKIT_X86_SIMD
const Kernels& avx2_kernels();
// With `bf16`, the table with the bf16 products (only for CPUs with AVX-512 BF16).
const Kernels& avx512_kernels(bool bf16);
#endif

struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C
  bool avx512 = false;  // AVX-512 F/BW/VL/DQ (+ F16C)
  bool avx512_bf16 = false;  // and AVX-512 BF16 (vdpbf16ps)
};

CpuFeatures cpu_features();

// The kernel table for `path` ("scalar", "avx2", "avx512", or "" for the best this CPU has).
// Throws std::runtime_error when the CPU lacks the requested path.
const Kernels& select_kernels(const std::string& path);

// Scalar conversions shared by the reference kernels and the tail loops of the SIMD ones.
inline float bf16_to_float(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float value;
  __builtin_memcpy(&value, &bits, 4);
  return value;
}
float half_to_float(uint16_t h);

}  // namespace tunekit
