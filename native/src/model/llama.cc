#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

#include "model/batch.h"
#include "model/sampler.h"

namespace tunekit {

namespace {

size_t dtype_size(DType dtype) { return dtype == DType::F32 ? 4 : 2; }

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); i++) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

}  // namespace

// ---- LoRA's term on the blocks of a frozen product ------------------------------------------

LowRankTail::LowRankTail(const Kernels& kernels, float* y, size_t rows, size_t out, size_t rank, float scale,
                         const float* t, const float* matrix, bool transposed)
    : k_(kernels), y_(y), out_(out), rank_(rank), scale_(scale), t_(t) {
  const size_t MR = k_.gemm_mr, NR = k_.gemm_nr, panels = (out + NR - 1) / NR, tiles = (rows + MR - 1) / MR;
  panels_.assign(panels * rank_ * NR, 0.0f);
  for (size_t j = 0; j < rank_; j++)
    for (size_t o = 0; o < out; o++)
      panels_[(o / NR) * rank_ * NR + j * NR + o % NR] = transposed ? matrix[o * rank_ + j] : matrix[j * out + o];
  tiles_.assign(tiles * rank_ * MR, 0.0f);
  for (size_t i = 0; i < rows; i++)
    for (size_t j = 0; j < rank_; j++) tiles_[(i / MR) * rank_ * MR + j * MR + i % MR] = scale_ * t_[i * rank_ + j];
}

void LowRankTail::operator()(size_t row0, size_t rows, size_t col0, size_t cols) const {
  if (bias_)
    for (size_t i = row0; i < row0 + rows; i++)
      for (size_t j = col0; j < col0 + cols; j++) y_[i * out_ + j] += bias_[j];
  if (rank_ == 0) return;
  const size_t MR = k_.gemm_mr, NR = k_.gemm_nr, KC = k_.gemm_kc;
  thread_local std::vector<float> tile, panel, product;
  if (mask_) product.resize(MR * NR);
  for (size_t i = row0; i < row0 + rows; i += MR) {
    const size_t tile_rows = std::min(MR, row0 + rows - i);
    const float* a = tiles_.data() + (i / MR) * rank_ * MR;
    if (i % MR != 0) {  // a block not on the tiles' rows: its own tile
      tile.resize(rank_ * MR);
      for (size_t kk = 0; kk < rank_; kk++)
        for (size_t ii = 0; ii < MR; ii++) tile[kk * MR + ii] = ii < tile_rows ? scale_ * t_[(i + ii) * rank_ + kk] : 0.0f;
      a = tile.data();
    }
    for (size_t j = col0; j < col0 + cols; j += NR) {
      const size_t panel_cols = std::min(NR, col0 + cols - j);
      const float* b = panels_.data() + (j / NR) * rank_ * NR;
      if (j % NR != 0) {  // a block not on the panels' columns: its own panel
        panel.assign(rank_ * NR, 0.0f);
        for (size_t kk = 0; kk < rank_; kk++)
          for (size_t jj = 0; jj < panel_cols; jj++)
            panel[kk * NR + jj] = panels_[((j + jj) / NR) * rank_ * NR + kk * NR + (j + jj) % NR];
        b = panel.data();
      }
      // Onto y, or (through the mask) from a product of its own started at zero.
      float* c = mask_ ? product.data() : y_ + i * out_ + j;
      const size_t ldc = mask_ ? NR : out_;
      if (mask_) std::fill(product.begin(), product.end(), 0.0f);
      for (size_t k0 = 0; k0 < rank_; k0 += KC)
        k_.gemm_tile(std::min(KC, rank_ - k0), a + k0 * MR, b + k0 * NR, c, ldc, tile_rows, panel_cols);
      if (mask_)
        for (size_t ii = 0; ii < tile_rows; ii++)
          k_.dropout_apply(mask_, (i + ii) * out_ + j, panel_cols, kept_, product.data() + ii * NR,
                           y_ + (i + ii) * out_ + j, true);
    }
  }
}

namespace {

// LoRA's forward term as a tail: y += (scale · t) Bᵀ, reading Bᵀ as kept beside B (else B itself,
// transposed); no adapter, no term.
LowRankTail lora_tail(const Kernels& k, float* y, size_t rows, size_t out, const LoraAdapter* adapter, const float* t) {
  if (!adapter) return LowRankTail(k, y, rows, out, 0, 0.0f, nullptr, nullptr, false);
  const bool kept = adapter->b_transposed.size() == adapter->b.size();
  return LowRankTail(k, y, rows, out, size_t(adapter->rank), adapter->scale, t,
                     kept ? adapter->b_transposed.data() : adapter->b.data(), !kept);
}

}  // namespace

// ---- Weight -------------------------------------------------------------------------------------

Weight::Weight(const TensorSource& source, const uint8_t* bytes, size_t rows, size_t cols)
    : dtype_(source.dtype), rows_(rows), cols_(cols), data_(bytes) {
  // safetensors only promises byte alignment; fp32 rows are used in place, so copy when misaligned.
  if (reinterpret_cast<uintptr_t>(bytes) % 4 != 0) {
    owned_.assign(bytes, bytes + source.bytes);
    data_ = owned_.data();
  }
}

void Weight::quantize_nf4(size_t block_size, bool double_quant, const Kernels& kernels) {
  std::vector<float> values(rows_ * cols_);
  for (size_t r = 0; r < rows_; r++) {
    const float* source = row(r, values.data() + r * cols_, kernels);
    if (source != values.data() + r * cols_) std::memcpy(values.data() + r * cols_, source, cols_ * 4);
  }
  nf4_ = std::make_unique<NF4Tensor>(tunekit::quantize_nf4(values.data(), values.size(), block_size, double_quant));
  // The source weights in the mapped file are not read again: let their pages go.
  if (owned_.empty() && data_) release_pages(data_, rows_ * cols_ * dtype_size(dtype_));
  dtype_ = DType::NF4;
  data_ = nullptr;
  owned_.clear();
  owned_.shrink_to_fit();
}

size_t Weight::bytes() const {
  if (dtype_ == DType::NF4) return nf4_->bytes();
  return rows_ * cols_ * dtype_size(dtype_);
}

const float* Weight::row(size_t r, float* scratch, const Kernels& kernels) const {
  return span(r, 0, cols_, scratch, kernels);
}

const float* Weight::span(size_t r, size_t col, size_t count, float* scratch, const Kernels& kernels) const {
  const size_t offset = r * cols_ + col;
  switch (dtype_) {
    case DType::F32: return reinterpret_cast<const float*>(data_) + offset;
    case DType::F16: kernels.f16_to_f32(reinterpret_cast<const uint16_t*>(data_) + offset, scratch, count); break;
    case DType::BF16: kernels.bf16_to_f32(reinterpret_cast<const uint16_t*>(data_) + offset, scratch, count); break;
    case DType::NF4: nf4_->dequantize(offset, count, scratch, kernels); break;
  }
  return scratch;
}

const uint16_t* Weight::span_bf16(size_t r, size_t col, size_t count, uint16_t* scratch, const Kernels& kernels) const {
  if (dtype_ == DType::BF16) return reinterpret_cast<const uint16_t*>(data_) + r * cols_ + col;
  const size_t first = r * cols_ + col;
  if (dtype_ == DType::NF4 && kernels.nf4_to_bf16 && first % 16 == 0 && count % 16 == 0 && nf4_->block_size % 16 == 0) {
    // Straight to bf16 (the values the fp32 decoding gives, rounded), the blocks' scales looked up once.
    const size_t block = nf4_->block_size, first_block = first / block, last_block = (first + count - 1) / block;
    const float* scales = nf4_->absmax.data() + first_block;
    thread_local std::vector<float> unpacked;
    if (nf4_->double_quant) {
      unpacked.resize(last_block - first_block + 1);
      for (size_t b = first_block; b <= last_block; b++) unpacked[b - first_block] = nf4_->block_absmax(b);
      scales = unpacked.data();
    }
    kernels.nf4_to_bf16(nf4_->packed.data() + first / 2, scales, first % block, block, kNF4Code, count, scratch);
    return scratch;
  }
  thread_local std::vector<float> decoded;
  if (decoded.size() < count) decoded.resize(count);
  kernels.f32_to_bf16(span(r, col, count, decoded.data(), kernels), scratch, count);
  return scratch;
}

// ---- Loading ------------------------------------------------------------------------------------

LlamaModel::LlamaModel(ModelConfig config, const std::vector<std::string>& files,
                       const std::vector<TensorSource>& tensors, const LoadOptions& options)
    : config_(std::move(config)), kernels_(&select_kernels(options.cpu)) {
  const ModelConfig& c = config_;
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.vocab_size <= 0 || c.max_positions <= 0)
    throw Error(ErrorCode::BadConfig, "config: sizes must be positive");
  if (c.num_heads % c.num_kv_heads != 0)
    throw Error(ErrorCode::BadConfig, "config: num_attention_heads must be a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0 || int(c.inv_freq.size()) != c.head_dim / 2)
    throw Error(ErrorCode::BadConfig, "config: RoPE needs head_dim / 2 frequencies");
  if (options.quantization != "none" && options.quantization != "nf4")
    throw Error(ErrorCode::InvalidArgument, "quantization must be \"none\" or \"nf4\", not \"" + options.quantization + "\"");
  if (options.compute_dtype != "f32" && options.compute_dtype != "bf16")
    throw Error(ErrorCode::InvalidArgument, "computeDtype must be \"f32\" or \"bf16\", not \"" + options.compute_dtype + "\"");
  bf16_ = options.compute_dtype == "bf16" && kernels_->has_bf16();

  for (const std::string& path : files) files_.push_back(std::make_unique<MappedFile>(path));

  auto find = [&](const std::string& name) -> const TensorSource& {
    for (const TensorSource& tensor : tensors)
      if (tensor.name == name) return tensor;
    throw Error(ErrorCode::MissingTensor, "missing tensor " + name);
  };
  auto load = [&](const std::string& name, std::vector<int64_t> shape) {
    const TensorSource& source = find(name);
    if (source.shape != shape)
      throw Error(ErrorCode::ShapeMismatch, "tensor " + name + " has shape " + shape_string(source.shape) + ", the config needs " +
                               shape_string(shape));
    if (source.dtype == DType::NF4) throw Error(ErrorCode::BadSafetensors, "tensor " + name + ": NF4 is not a source dtype");
    size_t count = 1;
    for (int64_t dim : shape) count *= size_t(dim);
    if (source.bytes != count * dtype_size(source.dtype))
      throw Error(ErrorCode::BadSafetensors, "tensor " + name + ": " + std::to_string(source.bytes) + " bytes for shape " +
                               shape_string(shape) + " in " + dtype_name(source.dtype));
    if (source.file < 0 || size_t(source.file) >= files_.size())
      throw Error(ErrorCode::InvalidArgument, "tensor " + name + ": no such file index");
    const MappedFile& file = *files_[source.file];
    if (source.offset > file.size() || source.bytes > file.size() - source.offset)
      throw Error(ErrorCode::BadSafetensors, "tensor " + name + " lies beyond the end of " + file.path() + " (truncated file?)");
    const size_t rows = shape.size() == 2 ? size_t(shape[0]) : 1;
    const size_t cols = shape.size() == 2 ? size_t(shape[1]) : size_t(shape[0]);
    return Weight(source, file.data() + source.offset, rows, cols);
  };

  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t Q = int64_t(c.num_heads) * c.head_dim, KV = int64_t(c.num_kv_heads) * c.head_dim;
  embed_ = load("model.embed_tokens.weight", {V, H});
  final_norm_ = load("model.norm.weight", {H});
  if (!c.tie_word_embeddings) lm_head_ = load("lm_head.weight", {V, H});
  layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; i++) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    Layer& layer = layers_[i];
    layer.input_norm = load(prefix + "input_layernorm.weight", {H});
    layer.post_attention_norm = load(prefix + "post_attention_layernorm.weight", {H});
    layer.q = load(prefix + "self_attn.q_proj.weight", {Q, H});
    layer.k = load(prefix + "self_attn.k_proj.weight", {KV, H});
    layer.v = load(prefix + "self_attn.v_proj.weight", {KV, H});
    layer.o = load(prefix + "self_attn.o_proj.weight", {H, Q});
    if (c.attention_bias) {
      layer.q_bias = load(prefix + "self_attn.q_proj.bias", {Q});
      layer.k_bias = load(prefix + "self_attn.k_proj.bias", {KV});
      layer.v_bias = load(prefix + "self_attn.v_proj.bias", {KV});
    }
    layer.gate = load(prefix + "mlp.gate_proj.weight", {I, H});
    layer.up = load(prefix + "mlp.up_proj.weight", {I, H});
    layer.down = load(prefix + "mlp.down_proj.weight", {H, I});
  }

  const size_t threads = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<ThreadPool>(threads);

  if (options.quantization == "nf4") {
    // Every frozen linear weight; embeddings, norms and the head stay as they are (QLoRA's recipe).
    std::vector<Weight*> linears;
    for (Layer& layer : layers_)
      for (Weight* weight : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down})
        linears.push_back(weight);
    pool_->parallel_for(linears.size(), [&](size_t begin, size_t end, size_t) {
      for (size_t i = begin; i < end; i++)
        linears[i]->quantize_nf4(options.nf4_block_size, options.nf4_double_quant, *kernels_);
    });
  }
}

WeightBytes LlamaModel::weight_bytes() const {
  WeightBytes bytes;
  bytes.embedding = embed_.bytes();
  bytes.head = config_.tie_word_embeddings ? 0 : lm_head_.bytes();
  bytes.norm = final_norm_.bytes();
  for (const Layer& layer : layers_) {
    bytes.norm += layer.input_norm.bytes() + layer.post_attention_norm.bytes();
    for (const Weight* weight : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down,
                                 &layer.q_bias, &layer.k_bias, &layer.v_bias})
      bytes.linear += weight->bytes();
  }
  return bytes;
}

// ---- Building blocks ----------------------------------------------------------------------------

RowSpans LlamaModel::weight_rows(const Weight& weight) const {
  const Kernels& k = *kernels_;
  return [&weight, &k](size_t row, size_t col, size_t count, float* scratch) {
    return weight.span(row, col, count, scratch, k);
  };
}

Bf16Rows LlamaModel::weight_rows_bf16(const Weight& weight) const {
  const Kernels& k = *kernels_;
  return [&weight, &k](size_t row, size_t col, size_t count, uint16_t* scratch) {
    return weight.span_bf16(row, col, count, scratch, k);
  };
}

void LlamaModel::linear(const float* x, int m, const Weight& weight, const Weight* bias, float* y,
                         const LoraAdapter* adapter, const float* t) const {
  const size_t N = weight.rows(), K = weight.cols();
  const Kernels& k = *kernels_;
  if (m < kGemmRows) {
    if (bf16_)
      linear_bf16_rows(x, m, weight, bias, y);
    else
      linear_rows(x, m, weight, bias, y);
    if (adapter) lora_tail(k, y, size_t(m), N, adapter, t)(0, size_t(m), 0, N);
    return;
  }
  std::vector<float> bias_scratch(bias ? N : 0);
  LowRankTail tail = lora_tail(k, y, size_t(m), N, adapter, t);
  tail.add_bias(bias ? bias->row(0, bias_scratch.data(), k) : nullptr);
  const Epilogue epilogue = std::cref(tail);
  const Epilogue* rest = bias || adapter ? &epilogue : nullptr;
  if (bf16_)
    multiply_transposed_bf16(k, *pool_, size_t(m), N, K, x, K, weight_rows_bf16(weight), y, N, rest);
  else
    multiply_transposed(k, *pool_, size_t(m), N, K, x, K, weight_rows(weight), y, N, rest);
}

// A few rows (decoding): each task takes 16 output features, whose weight rows are read in their
// stored type (BF16 and NF4 in place where the kernels can, else decoded to fp32 once) and meet every
// row of x while they are in L1. row_dots sums as the blocked product's tiles do, so a row gets the
// same bits here as among many.
void LlamaModel::linear_rows(const float* x, int m, const Weight& weight, const Weight* bias, float* y) const {
  const size_t N = weight.rows(), K = weight.cols();
  const Kernels& k = *kernels_;
  constexpr size_t kGroup = 16;
  const NF4Tensor* nf4 = weight.nf4();
  const bool bf16_in_place = weight.dtype() == DType::BF16 && k.row_dots_bf16;
  const bool nf4_in_place = weight.dtype() == DType::NF4 && k.row_dots_nf4 && nf4->block_size % 16 == 0 &&
                            K % nf4->block_size == 0;
  pool_->parallel_for((N + kGroup - 1) / kGroup, [&](size_t begin, size_t end, size_t) {
    std::vector<float> scratch(bf16_in_place || nf4_in_place ? 0 : kGroup * K), bias_scratch(bias ? N : 0);
    std::vector<float> scales(nf4_in_place && nf4->double_quant ? kGroup * (K / nf4->block_size) : 0);
    const float* b = bias ? bias->row(0, bias_scratch.data(), k) : nullptr;
    const float* w[kGroup];
    float out[kGroup];
    for (size_t group = begin; group < end; group++) {
      const size_t n0 = group * kGroup, count = std::min(kGroup, N - n0);
      const float* group_scales = nullptr;
      if (nf4_in_place) {
        const size_t blocks = K / nf4->block_size;
        if (!nf4->double_quant) {  // the rows' absmax values lie in order
          group_scales = nf4->absmax.data() + n0 * blocks;
        } else {
          for (size_t j = 0; j < count; j++)
            for (size_t block = 0; block < blocks; block++)
              scales[j * blocks + block] = nf4->block_absmax((n0 + j) * blocks + block);
          group_scales = scales.data();
        }
      } else if (!bf16_in_place) {
        for (size_t j = 0; j < count; j++) w[j] = weight.row(n0 + j, scratch.data() + j * K, k);
      }
      for (int row = 0; row < m; row++) {
        const float* xs = x + size_t(row) * K;
        if (bf16_in_place)
          k.row_dots_bf16(xs, weight.halves() + n0 * K, K, K, count, out);
        else if (nf4_in_place)
          k.row_dots_nf4(xs, nf4->packed.data() + n0 * K / 2, K / 2, group_scales, nf4->block_size, kNF4Code, K,
                         count, out);
        else
          k.row_dots(xs, w, K, count, out);
        for (size_t j = 0; j < count; j++) y[size_t(row) * N + n0 + j] = b ? out[j] + b[n0 + j] : out[j];
      }
    }
  });
}

// A few rows in bf16 (decoding): x rounded once into pairs; each task takes 16 output features, whose
// weight rows are read in place (BF16) or decoded and rounded (else), and runs every row of x against
// them with bf16_row_dots, which sums as the blocked product's tiles do.
void LlamaModel::linear_bf16_rows(const float* x, int m, const Weight& weight, const Weight* bias, float* y) const {
  const size_t N = weight.rows(), K = weight.cols(), pairs = (K + 1) / 2;
  const Kernels& k = *kernels_;
  constexpr size_t kGroup = 16;
  std::vector<uint32_t> xs(size_t(m) * pairs, 0);
  for (int row = 0; row < m; row++) k.f32_to_bf16(x + size_t(row) * K, reinterpret_cast<uint16_t*>(&xs[row * pairs]), K);
  const bool in_place = weight.dtype() == DType::BF16 && K % 2 == 0;
  const NF4Tensor* nf4 = weight.nf4();
  const bool nf4_rows = weight.dtype() == DType::NF4 && nf4->block_size % 16 == 0 && K % nf4->block_size == 0;
  const size_t blocks = nf4_rows ? K / nf4->block_size : 0;
  pool_->parallel_for((N + kGroup - 1) / kGroup, [&](size_t begin, size_t end, size_t) {
    std::vector<uint16_t> scratch(in_place ? 0 : kGroup * 2 * pairs);
    std::vector<float> scales(nf4_rows && nf4->double_quant ? blocks : 0);
    std::vector<float> bias_values(bias ? N : 0);
    const float* b = bias ? bias->row(0, bias_values.data(), k) : nullptr;
    const uint16_t* rows[kGroup];
    float out[kGroup * kGemmRows];
    for (size_t group = begin; group < end; group++) {
      const size_t n0 = group * kGroup, count = std::min(kGroup, N - n0);
      for (size_t j = 0; j < count; j++) {
        if (in_place) {
          rows[j] = weight.halves() + (n0 + j) * K;
          continue;
        }
        uint16_t* row = scratch.data() + j * 2 * pairs;
        if (nf4_rows) {  // one call a row (the values span_bf16 gives, decoded block by block)
          const size_t first = (n0 + j) * blocks;
          const float* row_scales = nf4->absmax.data() + first;
          if (nf4->double_quant) {
            for (size_t block = 0; block < blocks; block++) scales[block] = nf4->block_absmax(first + block);
            row_scales = scales.data();
          }
          k.nf4_to_bf16(nf4->packed.data() + (n0 + j) * K / 2, row_scales, 0, nf4->block_size, kNF4Code, K, row);
        } else {
          const uint16_t* values = weight.span_bf16(n0 + j, 0, K, row, k);
          if (values != row) std::memcpy(row, values, K * sizeof(uint16_t));
        }
        if (K % 2) row[K] = 0;  // the last pair's second half, as the blocked product pads it
        rows[j] = row;
      }
      const size_t next_rows = group + 1 < end ? std::min(kGroup, N - n0 - count) : 0;
      const char* next = in_place && next_rows ? reinterpret_cast<const char*>(weight.halves() + (n0 + count) * K) : nullptr;
      for (int r0 = 0; r0 < m; r0 += 4)
        k.bf16_row_dots(xs.data() + size_t(r0) * pairs, pairs, size_t(std::min(4, m - r0)), rows, count, pairs,
                        out + size_t(r0) * kGroup, kGroup, r0 == 0 ? next : nullptr, next_rows * K * 2);
      for (int row = 0; row < m; row++)
        for (size_t j = 0; j < count; j++)
          y[size_t(row) * N + n0 + j] = b ? out[size_t(row) * kGroup + j] + b[n0 + j] : out[size_t(row) * kGroup + j];
    }
  });
}

// dx[t] += Σ_o dy[t][o] · W[o]: a packed matrix product from kGemmRows rows on (W as it is stored,
// [out × in], is the product's right operand); for fewer rows each thread takes a range of rows and
// streams W once, four rows of W at a time so that each row of dx is read and written once per four.
void LlamaModel::linear_backward(const float* dy, int m, const Weight& weight, float* dx,
                                 const LowRankTail* tail) const {
  const size_t N = weight.rows(), K = weight.cols();
  const Kernels& k = *kernels_;
  const Epilogue epilogue = tail ? Epilogue(std::cref(*tail)) : Epilogue();
  if (bf16_) {
    multiply_add_bf16(k, *pool_, size_t(m), K, N, dy, N, weight_rows_bf16(weight), dx, K, tail ? &epilogue : nullptr);
    return;
  }
  if (m >= kGemmRows) {
    multiply_add(k, *pool_, size_t(m), K, N, dy, N, false, weight_rows(weight), dx, K, tail ? &epilogue : nullptr);
    return;
  }
  pool_->parallel_for(size_t(m), [&](size_t begin, size_t end, size_t) {
    std::vector<float> scratch(4 * K);
    const float* w[4];
    float g[4];
    size_t o = 0;
    for (; o + 4 <= N; o += 4) {
      for (size_t j = 0; j < 4; j++) w[j] = weight.row(o + j, scratch.data() + j * K, k);
      for (size_t t = begin; t < end; t++) {
        for (size_t j = 0; j < 4; j++) g[j] = dy[t * N + o + j];
        if (g[0] != 0.0f || g[1] != 0.0f || g[2] != 0.0f || g[3] != 0.0f) k.axpy4(g, w, dx + t * K, K);
      }
    }
    for (; o < N; o++) {
      const float* row = weight.row(o, scratch.data(), k);
      for (size_t t = begin; t < end; t++)
        if (dy[t * N + o] != 0.0f) k.axpy(dy[t * N + o], row, dx + t * K, K);
    }
  });
  if (tail) (*tail)(0, size_t(m), 0, K);
}

void LlamaModel::head(const float* hidden, int m, float* logits) const { linear(hidden, m, head_weight(), nullptr, logits); }

KVCache LlamaModel::new_cache(int capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  const size_t size = size_t(capacity) * config_.num_kv_heads * config_.head_dim;
  cache.keys.assign(config_.num_layers, std::vector<float>(size));
  cache.values.assign(config_.num_layers, std::vector<float>(size));
  return cache;
}

void LlamaModel::check_tokens(const std::vector<int32_t>& tokens) const {
  for (size_t i = 0; i < tokens.size(); i++)
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size)
      throw Error(ErrorCode::TokenOutOfRange, "token id " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(config_.vocab_size) + ")");
}

// ---- LoRA ---------------------------------------------------------------------------------------

const char* const kProjectionNames[kProjections] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};

const Weight& LlamaModel::projection(const Layer& layer, int projection) const {
  switch (projection) {
    case kQ: return layer.q;
    case kK: return layer.k;
    case kV: return layer.v;
    case kO: return layer.o;
    case kGate: return layer.gate;
    case kUp: return layer.up;
    default: return layer.down;
  }
}

std::pair<size_t, size_t> LlamaModel::projection_shape(int p) const {
  if (p < 0 || p >= kProjections) throw Error(ErrorCode::InvalidArgument, "no such projection");
  const Weight& weight = projection(layers_[0], p);
  return {weight.cols(), weight.rows()};
}

void LlamaModel::set_lora(std::shared_ptr<const LoraSet> lora) {
  if (lora) {
    if (int(lora->layers.size()) != config_.num_layers) throw Error(ErrorCode::ShapeMismatch, "LoRA set has the wrong layer count");
    for (const auto& layer : lora->layers)
      for (int p = 0; p < kProjections; p++) {
        const LoraAdapter* adapter = layer[p].get();
        if (!adapter) continue;
        const auto [in, out] = projection_shape(p);
        if (adapter->rank <= 0 || adapter->a.size() != size_t(adapter->rank) * in ||
            adapter->b.size() != out * size_t(adapter->rank))
          throw Error(ErrorCode::ShapeMismatch, std::string("LoRA adapter of ") + kProjectionNames[p] + " has the wrong shape");
      }
  }
  std::lock_guard<std::mutex> lock(training_mutex_);
  std::atomic_store(&lora_, std::move(lora));
  reset_training();
}

// t [m × r] = x Aᵀ, then y [m × out] += (scale · t) Bᵀ, adding the r products to each y in turn: one
// code path for inference and training, and for any m, so a batch's rows get the bits the same rows
// get alone. The second product runs over r (16, say) as accumulated outer products, which suits
// so short a sum far better than dot products would; it reads B through Bᵀ [r × out].
void LlamaModel::apply_lora(const float* x, int m, const LoraAdapter& adapter, float* y, size_t out_features,
                            float* t) const {
  const size_t r = size_t(adapter.rank), in = adapter.a.size() / r, rows = size_t(m), out = out_features;
  const Kernels& k = *kernels_;
  std::vector<float> own;
  if (!t) {
    own.resize(rows * r);
    t = own.data();
  }
  if (x) multiply_transposed(k, *pool_, rows, r, in, x, in, dense_rows(adapter.a.data(), in), t, r);
  if (!y) return;  // only t wanted
  // y += (scale · t) Bᵀ, a block of gemm_mr rows a task.
  const LowRankTail tail = lora_tail(k, y, rows, out, &adapter, t);
  const size_t MR = k.gemm_mr;
  pool_->parallel_for((rows + MR - 1) / MR, [&](size_t begin, size_t end, size_t) {
    tail(begin * MR, std::min(rows, end * MR) - begin * MR, 0, out);
  });
}

std::vector<float> LlamaModel::merged_weight(int layer, int p) const {
  if (layer < 0 || layer >= config_.num_layers) throw Error(ErrorCode::InvalidArgument, "no such layer");
  const auto [in, out] = projection_shape(p);
  const Weight& weight = projection(layers_[layer], p);
  std::vector<float> merged(out * in), scratch(in);
  for (size_t o = 0; o < out; o++) {
    const float* row = weight.row(o, scratch.data(), *kernels_);
    std::copy(row, row + in, merged.begin() + o * in);
  }
  const std::shared_ptr<const LoraSet> lora = this->lora();
  const LoraAdapter* adapter = lora ? lora->layers[layer][p].get() : nullptr;
  if (adapter) {
    const size_t r = size_t(adapter->rank);
    for (size_t o = 0; o < out; o++)
      for (size_t j = 0; j < r; j++)
        kernels_->axpy(adapter->scale * adapter->b[o * r + j], adapter->a.data() + j * in, merged.data() + o * in, in);
  }
  return merged;
}

// ---- The decoder over KV caches (the block itself is in decoder.cc) -------------------------------

void LlamaModel::forward(const int32_t* tokens, int count, KVCache& cache, const LoraSet* lora, float* out) const {
  forward(tokens, {Segment{&cache, count, lora}}, out);
}

void LlamaModel::forward(const int32_t* tokens, const std::vector<Segment>& segments, float* out) const {
  // Each row of the batch: its sequence's cache, its position there, and its adapters (neighbouring
  // segments on the same adapters make one run).
  BlockRows rows;
  for (const Segment& segment : segments) {
    if (segment.cache->length + segment.count > segment.cache->capacity)
      throw Error(ErrorCode::EngineFailed, "KV cache is full");
    if (!rows.lora.empty() && rows.lora.back().set == segment.lora)
      rows.lora.back().count += segment.count;
    else
      rows.lora.push_back(LoraRun{int(rows.position.size()), segment.count, segment.lora});
    for (int t = 0; t < segment.count; t++) {
      rows.cache.push_back(segment.cache);
      rows.position.push_back(segment.cache->length + t);
    }
  }
  rows.count = int(rows.position.size());
  const ops::RopeTable rope = ops::rope_table(rows.position, config_.inv_freq, config_.attention_scaling);
  std::vector<float> x(size_t(rows.count) * config_.hidden_size);
  embed(tokens, rows.count, x.data());
  BlockActivations scratch;
  for (int l = 0; l < config_.num_layers; l++) block_forward(l, x.data(), rows, rope, nullptr, scratch, false);
  std::vector<float> norm(config_.hidden_size);
  ops::rms_norm(*kernels_, x.data(), rows.count, config_.hidden_size, final_norm_.row(0, norm.data(), *kernels_),
                config_.rms_norm_eps, out, nullptr);
  for (const Segment& segment : segments) segment.cache->length += segment.count;
}

// ---- Entry points -------------------------------------------------------------------------------

std::vector<float> LlamaModel::logits(const std::vector<int32_t>& tokens, const LoraSet* lora) const {
  check_tokens(tokens);
  if (tokens.empty()) return {};
  if (int(tokens.size()) > config_.max_positions)
    throw Error(ErrorCode::ContextLengthExceeded, std::to_string(tokens.size()) + " tokens exceed max_position_embeddings (" +
                            std::to_string(config_.max_positions) + ")");
  const int T = int(tokens.size());
  KVCache cache = new_cache(T);
  std::vector<float> hidden(size_t(T) * config_.hidden_size);
  forward(tokens.data(), T, cache, lora, hidden.data());
  std::vector<float> out(size_t(T) * config_.vocab_size);
  head(hidden.data(), T, out.data());
  return out;
}

void LlamaModel::check_batch(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                             const std::vector<int>& lengths) const {
  check_tokens(tokens);
  if (labels.size() != tokens.size())
    throw Error(ErrorCode::InvalidArgument, "labels has " + std::to_string(labels.size()) + " entries for " +
                                std::to_string(tokens.size()) + " tokens");
  for (size_t i = 0; i < labels.size(); i++)
    if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= config_.vocab_size))
      throw Error(ErrorCode::TokenOutOfRange, "label " + std::to_string(labels[i]) + " at position " + std::to_string(i) +
                              " is neither -100 nor a token id");
  size_t packed = 0;
  for (int length : lengths) {
    if (length <= 0) throw Error(ErrorCode::InvalidArgument, "sequence lengths must be > 0");
    if (length > config_.max_positions)
      throw Error(ErrorCode::ContextLengthExceeded, "a sequence of " + std::to_string(length) + " tokens exceeds max_position_embeddings (" +
                              std::to_string(config_.max_positions) + ")");
    packed += size_t(length);
  }
  if (packed != tokens.size()) throw Error(ErrorCode::InvalidArgument, "sequence lengths must add up to the token count");
}

LlamaModel::LossResult LlamaModel::loss(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                                        const std::vector<int>& lengths, const LoraSet* lora) const {
  const std::vector<int> sequences = lengths.empty() ? std::vector<int>{int(tokens.size())} : lengths;
  if (tokens.empty()) {
    check_batch(tokens, labels, {});
    return {};
  }
  check_batch(tokens, labels, sequences);
  const int T = int(tokens.size()), H = config_.hidden_size;
  // One cache per sequence, so positions restart and attention stays inside each.
  std::vector<KVCache> caches;
  caches.reserve(sequences.size());
  std::vector<Segment> segments;
  std::vector<bool> last_of_sequence(size_t(T), false);
  int row = 0;
  for (int length : sequences) {
    caches.push_back(new_cache(length));
    segments.push_back(Segment{&caches.back(), length, lora});
    row += length;
    last_of_sequence[size_t(row - 1)] = true;
  }
  std::vector<float> hidden(size_t(T) * H);
  forward(tokens.data(), segments, hidden.data());
  // The rows whose next label counts, as training picks them.
  std::vector<int> rows;
  std::vector<int32_t> targets;
  for (int t = 0; t < T; t++)
    if (!last_of_sequence[size_t(t)] && labels[size_t(t + 1)] != -100) {
      rows.push_back(t);
      targets.push_back(labels[size_t(t + 1)]);
    }
  const HeadLoss head = head_loss(hidden.data(), rows, targets, 0.0f, nullptr);
  LossResult result;
  result.tokens = rows.size();
  result.correct = head.correct;
  result.loss = result.tokens ? head.total / double(result.tokens) : 0.0;
  return result;
}

Generation LlamaModel::generate(const std::vector<int32_t>& prompt, const SamplingOptions& options,
                                const std::atomic<bool>& cancelled,
                                const std::function<void(int32_t)>& on_token) const {
  std::vector<Generation> results = generate_batch(
      {prompt}, options, cancelled, [](size_t) { return false; },
      [&](size_t, int32_t token) { on_token(token); });
  return std::move(results[0]);
}

std::vector<Generation> LlamaModel::generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                   const SamplingOptions& options, const std::atomic<bool>& cancelled,
                                                   const std::function<bool(size_t)>& stopped,
                                                   const std::function<void(size_t, int32_t)>& on_token) const {
  const std::shared_ptr<const LoraSet> lora = options.adapter ? this->lora() : nullptr;
  DecodeBatch batch(*this);
  std::vector<uint64_t> ids;
  for (size_t b = 0; b < prompts.size(); b++) {
    SamplingOptions own = options;
    own.seed = options.seed + b;  // a batch gives what each prompt gives alone with that seed
    ids.push_back(batch.add(prompts[b], own, lora));
  }
  std::vector<Generation> results(prompts.size());
  std::vector<bool> done(prompts.size(), false);
  while (batch.size() > 0) {
    for (size_t b = 0; b < prompts.size(); b++) {
      if (done[b]) continue;
      if (cancelled.load(std::memory_order_relaxed))
        batch.cancel(ids[b]);
      else if (stopped(b))
        batch.stop(ids[b]);
    }
    for (StepEvent& event : batch.step()) {
      const size_t b = size_t(event.id - ids[0]);
      Generation& result = results[b];
      if (event.has_token) {
        result.tokens.push_back(event.token);
        result.logits.insert(result.logits.end(), event.logits.begin(), event.logits.end());
        on_token(b, event.token);
      }
      if (event.finished) {
        result.finish = event.finish;
        done[b] = true;
      }
    }
  }
  return results;
}

}  // namespace tunekit
