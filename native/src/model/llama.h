// The Llama-family decoder (Llama, Mistral, Qwen2 and anything with the same block), computed as
// Hugging Face transformers computes it (models/llama/modeling_llama.py): RMSNorm in fp32,
// rotate_half RoPE, grouped-query causal attention, SwiGLU MLP, tied or separate head.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "kernels/nf4.h"
#include "model/ops.h"
#include "model/sampler.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace tunekit {

struct ModelConfig {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int max_positions = 0;
  float rms_norm_eps = 1e-6f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Qwen2: q/k/v carry a bias
  std::vector<float> inv_freq;  // head_dim / 2 RoPE frequencies, scaling already applied
  float attention_scaling = 1.0f;  // RoPE's cos/sin factor (1 except for yarn-like schemes)
};

// Where one tensor lies: a byte range of a mapped safetensors file.
struct TensorSource {
  std::string name;
  int file = 0;
  uint64_t offset = 0;  // from the start of the file
  uint64_t bytes = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

struct LoadOptions {
  std::string quantization = "none";  // "none" | "nf4"
  size_t nf4_block_size = 64;
  bool nf4_double_quant = false;
  size_t threads = 0;  // 0: all hardware threads
  std::string cpu;     // "" (best), "scalar", "avx2", "avx512"
  // "f32", or "bf16": the frozen weights' products (linear layers forward and backward, the head) take
  // bf16 inputs with fp32 sums where the kernels have them (else f32); everything else stays fp32.
  std::string compute_dtype = "f32";
};

// A weight matrix [rows × cols] in its storage dtype; rows are handed out as fp32.
class Weight {
 public:
  Weight() = default;
  Weight(const TensorSource& source, const uint8_t* bytes, size_t rows, size_t cols);
  // Quantizes to NF4 (the source stays mapped but is no longer referenced).
  void quantize_nf4(size_t block_size, bool double_quant, const Kernels& kernels);

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const;
  bool empty() const { return rows_ == 0; }
  // Row r as fp32: a pointer into the weights for F32, else decoded into scratch (cols floats).
  const float* row(size_t r, float* scratch, const Kernels& kernels) const;
  // Columns [col, col + count) of row r, the same way (scratch: count floats).
  const float* span(size_t r, size_t col, size_t count, float* scratch, const Kernels& kernels) const;
  // The same columns as bf16 (kernels.f32_to_bf16 must be there): a pointer into the weights for
  // BF16, else decoded and rounded into scratch (count values).
  const uint16_t* span_bf16(size_t r, size_t col, size_t count, uint16_t* scratch, const Kernels& kernels) const;
  // The stored values, for kernels that read them in place: 16-bit rows (F16, BF16) and NF4.
  const uint16_t* halves() const { return reinterpret_cast<const uint16_t*>(data_); }
  const NF4Tensor* nf4() const { return nf4_.get(); }

 private:
  DType dtype_ = DType::F32;
  size_t rows_ = 0, cols_ = 0;
  const uint8_t* data_ = nullptr;  // in the mapped file, or owned_ when it was not 4-byte aligned
  std::vector<uint8_t> owned_;
  std::unique_ptr<NF4Tensor> nf4_;
};

// The seven linear projections of a block, in the order LoRA adapters are indexed.
enum Projection : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kProjections };
extern const char* const kProjectionNames[kProjections];

// A LoRA adapter of one projection, as PEFT defines it: y += scale · B (A x), A [rank × in],
// B [out × rank], scale = alpha / rank (or alpha / √rank with rsLoRA).
struct LoraAdapter {
  int rank = 0;
  float scale = 1.0f;
  std::vector<float> a, b;
  // Bᵀ [rank × out], the layout the products read B in; kept beside B (set by transpose_b whenever B
  // changes) so that a decode step does not transpose every adapter again.
  std::vector<float> b_transposed;
  void transpose_b() {
    const size_t r = size_t(rank), out = r == 0 ? 0 : b.size() / r;
    b_transposed.resize(b.size());
    for (size_t o = 0; o < out; o++)
      for (size_t j = 0; j < r; j++) b_transposed[j * out + o] = b[o * r + j];
  }
};

// The adapters of every layer (null where a projection has none). Calls take a snapshot at their
// start, so replacing the set never disturbs a call that is running.
struct LoraSet {
  std::vector<std::array<std::shared_ptr<const LoraAdapter>, kProjections>> layers;
};

// y [rows × out] += (scale · t) M for t [rows × rank] and M [rank × out] (or Mᵀ stored, `transposed`), on
// any block of y (gemm.h's Epilogue): M in panels of gemm_nr columns, scale · t in tiles of gemm_mr
// rows, gemm_tile gemm_kc of the rank at a time, as multiply_add runs the same product, so that each
// element gets the sums it gets there. LoRA's term (t = A x̃, M = Bᵀ; in the backward, t = s u and
// M = A), added to each block of the frozen product while it is in cache. add_bias adds a bias
// first; through_mask adds (scale · t) M through a dropout mask (Kernels::dropout_apply) instead.
class LowRankTail {
 public:
  LowRankTail(const Kernels& kernels, float* y, size_t rows, size_t out, size_t rank, float scale, const float* t,
              const float* matrix, bool transposed);
  void add_bias(const float* bias) { bias_ = bias; }
  void through_mask(const uint8_t* mask, float kept) { mask_ = mask, kept_ = kept; }
  void operator()(size_t row0, size_t rows, size_t col0, size_t cols) const;

 private:
  const Kernels& k_;
  float* y_;
  size_t out_, rank_;
  float scale_;
  const float* t_;
  std::vector<float> panels_, tiles_;  // matrix as panels [panel][rank][NR], scale · t as tiles [tile][rank][MR]
  const float* bias_ = nullptr;
  const uint8_t* mask_ = nullptr;
  float kept_ = 1.0f;
};

struct Layer {
  Weight input_norm, post_attention_norm;
  Weight q, k, v, o;
  Weight q_bias, k_bias, v_bias;  // vectors stored as [1 × n]; empty unless attention_bias
  Weight gate, up, down;
};

// Keys and values of the positions seen so far, per layer: [capacity × kv_heads × head_dim].
struct KVCache {
  int capacity = 0;
  int length = 0;
  std::vector<std::vector<float>> keys, values;
};

// Rows of a batch that belong to one sequence: `count` new tokens appended to `cache`, through the
// adapters `lora` (null: the base model).
struct Segment {
  KVCache* cache;
  int count;
  const LoraSet* lora = nullptr;
};

// Consecutive rows of a batch that go through the same adapters (null: none). The frozen weights
// meet every row of a batch at once; each run's rows then meet their own adapters.
struct LoraRun {
  int first = 0, count = 0;
  const LoraSet* set = nullptr;
};

// How the rows of one pass through the decoder see keys and values.
// - Inference: each row belongs to a sequence with a KV cache; its key and value are appended there at
//   its position, and it attends to the cache up to that position.
// - Training: the rows are packed sequences with no cache; row t attends to the rows first[t] … t.
struct BlockRows {
  int count = 0;                  // T
  std::vector<int> position;      // each row's position in its sequence
  std::vector<KVCache*> cache;    // inference: each row's cache; empty in training
  std::vector<int> first;         // training: the row where each row's sequence starts
  std::vector<LoraRun> lora;      // the adapters of every row, in runs (training: one run)
};

// What one block's forward pass computes. Training keeps it for the backward pass (x_in, x_mid, the
// attention's log-sum-exp, each adapter's A·x and dropout mask); inference reuses it as scratch.
struct BlockActivations {
  std::vector<float> x_in, n1, rstd1;   // block input, its norm, 1/rms per row
  std::vector<float> q, k, v;           // after RoPE (q, k) [T × Q], [T × KV]
  std::vector<float> lse;               // attention log-sum-exp per (row, head) [T × Hq]
  std::vector<float> attn;              // attention output [T × Q]
  std::vector<float> x_mid, n2, rstd2;  // after the attention residual, its norm
  std::vector<float> gate, up, act;     // [T × I]: gate and up projections, silu(gate)·up
  std::array<std::vector<float>, kProjections> lora_t;     // A·dropout(x) per adapted projection [T × r]
  std::array<std::vector<uint8_t>, kProjections> lora_mask;  // dropout's kept bits per input [T × in] (+ 8 bytes)
};

// Dropout on the adapters' inputs while training (PEFT: lora_B(lora_A(dropout(x)))).
struct Dropout {
  float p = 0.0f;
  Random* random = nullptr;  // where the masks come from; a replay of it repeats them exactly
};

struct WeightBytes {
  size_t linear = 0, embedding = 0, head = 0, norm = 0;
};

enum class FinishReason { Stop, Length, Abort };

struct SamplingOptions {
  bool adapter = true;  // apply the LoRA adapters
  int max_tokens = 256;
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // 1: off
  uint64_t seed = 0;
  std::vector<int32_t> stop_tokens;
  bool collect_logits = false;  // keep each step's logits (tests compare them with a full recompute)
  int top_logprobs = -1;        // ≥ 0: report the chosen token's log-probability and this many best
};

struct Generation {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::Length;
  std::vector<float> logits;  // [steps × vocab] when collect_logits
};

class DecodeBatch;

class LlamaModel {
 public:
  LlamaModel(ModelConfig config, const std::vector<std::string>& files, const std::vector<TensorSource>& tensors,
             const LoadOptions& options);

  const ModelConfig& config() const { return config_; }
  const Kernels& kernels() const { return *kernels_; }
  size_t threads() const { return pool_->size(); }
  // The type the frozen weights' products take their inputs in: "bf16" when asked for and the kernels
  // have bf16 products, else "f32".
  const char* compute_dtype() const { return bf16_ ? "bf16" : "f32"; }
  WeightBytes weight_bytes() const;

  // The LoRA adapters now attached (null when none), and replacing them.
  std::shared_ptr<const LoraSet> lora() const { return std::atomic_load(&lora_); }
  void set_lora(std::shared_ptr<const LoraSet> lora);
  // in and out features of a projection.
  std::pair<size_t, size_t> projection_shape(int projection) const;
  // W + scale · B A of one projection (the base weight dequantized), [out × in], for merging.
  std::vector<float> merged_weight(int layer, int projection) const;

  // ---- Training (train.cc) ----
  // The mean loss of a packed batch (sequences of `lengths` tokens one after another; positions
  // restart and attention stays inside each; labels as in loss()) and the gradients of that mean with
  // respect to every LoRA A and B, in the shapes of the attached set. No dropout.
  struct LoraGradient {
    std::vector<float> a, b;
  };
  struct Gradients {
    double loss = 0.0;
    size_t tokens = 0;
    std::vector<std::array<LoraGradient, kProjections>> layers;
  };
  // `checkpointing`: keep only each block's input and recompute its activations in the backward pass.
  Gradients loss_and_gradients(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                               const std::vector<int>& lengths, bool checkpointing = false) const;

  // A training step's halves. forward_backward adds the gradients of the summed token loss (dropout
  // `dropout` on the adapters' inputs) to the gradient buffers and returns the batch's mean loss and
  // token count; optimizer_step divides the buffers by the tokens accumulated since the last step,
  // clips them to max_grad_norm (0: no clipping), applies AdamW to the LoRA matrices, zeroes the
  // buffers and returns the gradient norm before clipping.
  std::pair<double, size_t> forward_backward(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                                             const std::vector<int>& lengths, float dropout, bool checkpointing = false);
  struct AdamW {
    float learning_rate = 1e-4f, weight_decay = 0.0f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, max_grad_norm = 0.0f;
  };
  double optimizer_step(const AdamW& options);
  // The optimizer's state: step count, dropout generator, and AdamW's moments per adapter.
  struct OptimizerState {
    int64_t step = 0;
    std::array<uint64_t, 4> random{};
    std::vector<std::array<LoraGradient, kProjections>> exp_avg, exp_avg_sq;
  };
  OptimizerState optimizer_state() const;
  void set_optimizer_state(const OptimizerState& state);
  void seed_dropout(uint64_t seed);

  // Logits of every position of one sequence: [tokens × vocab], through the adapters `lora` (null: none).
  std::vector<float> logits(const std::vector<int32_t>& tokens, const LoraSet* lora) const;
  // Mean next-token cross-entropy (logits at t predict labels[t + 1]; -100 ignored), the labelled
  // token count, and how many of those the greedy choice (first argmax) predicts. `lengths` packs
  // sequences as in loss_and_gradients (empty: one sequence); no label crosses a sequence boundary.
  struct LossResult {
    double loss = 0.0;
    size_t tokens = 0, correct = 0;
  };
  LossResult loss(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                  const std::vector<int>& lengths, const LoraSet* lora) const;
  // Autoregressive generation with a KV cache; on_token sees each new id as it is chosen.
  Generation generate(const std::vector<int32_t>& prompt, const SamplingOptions& options,
                      const std::atomic<bool>& cancelled, const std::function<void(int32_t)>& on_token) const;
  // Several prompts decoded together (a DecodeBatch run to its end). Sequence b samples with
  // options.seed + b; `stopped(b)` ends sequence b (a stop string found by the caller); on_token(b, id)
  // sees each new id.
  std::vector<Generation> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                         const SamplingOptions& options, const std::atomic<bool>& cancelled,
                                         const std::function<bool(size_t)>& stopped,
                                         const std::function<void(size_t, int32_t)>& on_token) const;

 private:
  void check_tokens(const std::vector<int32_t>& tokens) const;
  // Checks a packed batch: token ids, labels (-100 or an id) beside them, and sequence lengths that
  // are positive, fit max_position_embeddings and add up to the token count.
  void check_batch(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                   const std::vector<int>& lengths) const;
  friend class DecodeBatch;
  // Runs `count` tokens at positions cache.length… through the decoder, appending to the cache;
  // writes the final-normed hidden states [count × hidden] to out.
  void forward(const int32_t* tokens, int count, KVCache& cache, const LoraSet* lora, float* out) const;
  // The same for a batch of rows from several sequences, each segment's rows appended to its cache
  // and run through its own adapters.
  void forward(const int32_t* tokens, const std::vector<Segment>& segments, float* out) const;

  // ---- The decoder block (block.cc): what an architecture defines, forward and backward ----
  // x [T × H] = the embeddings of the tokens.
  void embed(const int32_t* tokens, int T, float* x) const;
  // One block over the rows (each through its run's adapters), x [T × H] updated in place from its
  // input to its output. `keep`: fill `a` with what block_backward needs (training); else `a` is
  // scratch. `dropout` only in training. `recompute` (with keep): only fill `a`, for the backward pass
  // of a checkpointed block whose output is already known and whose attention output and
  // log-sum-exps, LoRA's A x̃ and dropout masks the forward pass kept (given in a.attn, a.lse,
  // a.lora_t and a.lora_mask): neither attention nor A x̃ nor the masks are made again, the down
  // projection (which only makes the output) is skipped, x is left part-way.
  void block_forward(int l, float* x, const BlockRows& rows, const ops::RopeTable& rope, const Dropout* dropout,
                     BlockActivations& a, bool keep, bool recompute = false) const;
  // Its backward pass: dx [T × H] holds the gradient of the block's output and becomes that of its
  // input; the gradients of the layer's adapters are added to `grads`.
  void block_backward(int l, const BlockRows& rows, const ops::RopeTable& rope, const LoraSet& lora, float dropout,
                      const BlockActivations& a, float* dx, std::array<LoraGradient, kProjections>& grads) const;
  // A projection with its adapters: y = W x (+ b) + s·B(A dropout(x)), each run of rows with its own;
  // with `keep` (one run), A dropout(x) and the mask go to a.lora_t / a.lora_mask, and y may be null
  // (only those are wanted); with `recompute` too, a.lora_t holds A dropout(x) already.
  void project(int l, int p, const float* x, int T, const Weight* bias, const std::vector<LoraRun>& lora,
               const Dropout* dropout, float* y, BlockActivations& a, bool keep, bool recompute = false) const;
  // Its backward: dx += Wᵀ dy + mask ⊙ s·Aᵀ(Bᵀ dy); dB += dyᵀ(s·A x̃); dA += s·(dy B)ᵀ x̃, x̃ = mask ⊙ x
  // (dropout p > 0: the mask a.lora_mask keeps, kept elements scaled by 1 / (1 − p)).
  void project_backward(int l, int p, const float* x, const float* dy, int T, const LoraSet& lora, float dropout,
                        const BlockActivations& a, float* dx, LoraGradient& grad) const;
  // The next-token loss at the rows `rows` of the final hidden states [T × H], predicting targets[i]
  // at rows[i]: the head in chunks of rows, each row's softmax on its own thread, summed in order.
  // With `gradient_scale` > 0 the gradient of (sum of losses) · scale reaches dh [T × H] through the head.
  struct HeadLoss {
    double total = 0.0;
    size_t correct = 0;
  };
  HeadLoss head_loss(const float* hidden, const std::vector<int>& rows, const std::vector<int32_t>& targets,
                     float gradient_scale, float* dh) const;
  // y += scale · B (A x) for the m rows of x; `t`, when given, receives A x [m × rank] (training), and
  // then y may be null (only t), or x null (t holds A x already).
  void apply_lora(const float* x, int m, const LoraAdapter& adapter, float* y, size_t out_features,
                  float* t = nullptr) const;
  KVCache new_cache(int capacity) const;
  // y[m × N] = x[m × K] · Wᵀ (+ bias) (+ scale · t Bᵀ of `adapter`, t = A x [m × rank] given): LoRA's
  // term added as apply_lora adds it, onto each block of the frozen product while it is in cache.
  void linear(const float* x, int m, const Weight& weight, const Weight* bias, float* y,
              const LoraAdapter* adapter = nullptr, const float* t = nullptr) const;
  // linear (without the adapter) for m < kGemmRows rows, summed as the blocked products sum: in fp32,
  // and in bf16.
  void linear_rows(const float* x, int m, const Weight& weight, const Weight* bias, float* y) const;
  void linear_bf16_rows(const float* x, int m, const Weight& weight, const Weight* bias, float* y) const;
  // dx [m × in] += dy [m × out] · W: the input gradient of a frozen linear; then `tail` (LoRA's
  // term) on each block of dx.
  void linear_backward(const float* dy, int m, const Weight& weight, float* dx,
                       const LowRankTail* tail = nullptr) const;
  // From this many rows on, linear and linear_backward run as packed matrix products (kernels/gemm.h);
  // fewer rows take paths that sum as those do (so that a row gets the same bits alone as among many).
  static constexpr int kGemmRows = 8;
  RowSpans weight_rows(const Weight& weight) const;
  Bf16Rows weight_rows_bf16(const Weight& weight) const;
  void head(const float* hidden, int m, float* logits) const;
  const Weight& head_weight() const { return config_.tie_word_embeddings ? embed_ : lm_head_; }
  const Weight& projection(const Layer& layer, int projection) const;

  ModelConfig config_;
  std::vector<std::unique_ptr<MappedFile>> files_;
  Weight embed_, final_norm_, lm_head_;
  std::vector<Layer> layers_;
  const Kernels* kernels_;
  bool bf16_ = false;  // compute_dtype "bf16" on kernels that have it
  std::unique_ptr<ThreadPool> pool_;
  std::shared_ptr<const LoraSet> lora_;

  // Training: one call at a time; reset whenever the adapters are replaced from outside.
  Gradients train_pass(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                       const std::vector<int>& lengths, float dropout, Random* random, bool mean,
                       bool checkpointing) const;
  void reset_training();
  mutable std::mutex training_mutex_;
  std::vector<std::array<LoraGradient, kProjections>> gradient_sums_;
  size_t gradient_tokens_ = 0;
  OptimizerState optimizer_;
  Random dropout_random_{0};
};

}  // namespace tunekit
