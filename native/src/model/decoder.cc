// The Llama-family decoder, forward and backward: the embedding, one block, and the head with its
// loss. Inference (llama.cc) and training (train.cc) both run these functions, so an architecture is
// defined here and only here: a new block shape (extra norms, another activation, a bias) means
// changing block_forward and the block_backward below it, and nothing else.
//
// Shapes: T rows, H hidden, D head_dim, Hq / Hkv heads, Q = Hq·D, KV = Hkv·D, I intermediate, r a LoRA
// rank, V the vocabulary.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/llama.h"
#include "model/ops.h"

namespace tunekit {

namespace {

// A vector weight (a norm's [H]) as fp32: in place for F32, else decoded into `scratch`.
const float* vector_of(const Weight& weight, std::vector<float>& scratch, const Kernels& k) {
  scratch.resize(weight.cols());
  return weight.row(0, scratch.data(), k);
}

// fp32 storage left uninitialized, for buffers that are written whole before they are read (zeroing
// large ones on every call showed up in the training step's profile).
class Floats {
 public:
  explicit Floats(size_t count) : data_(new float[count]) {}
  float* data() { return data_.get(); }
  float& operator[](size_t i) { return data_[i]; }

 private:
  std::unique_ptr<float[]> data_;
};

}  // namespace

void LlamaModel::embed(const int32_t* tokens, int T, float* x) const {
  const size_t H = size_t(config_.hidden_size);
  for (int t = 0; t < T; t++) {
    const float* row = embed_.row(size_t(tokens[t]), x + size_t(t) * H, *kernels_);
    if (row != x + size_t(t) * H) std::memcpy(x + size_t(t) * H, row, sizeof(float) * H);
  }
}

// ---- Projections: a frozen linear weight and its LoRA adapter ------------------------------------

void LlamaModel::project(int l, int p, const float* x, int T, const Weight* bias, const std::vector<LoraRun>& lora,
                         const Dropout* dropout, float* y, BlockActivations& a, bool keep, bool recompute) const {
  const Weight& weight = projection(layers_[l], p);
  const size_t in = weight.cols(), out = weight.rows();
  const bool training = keep || (dropout && dropout->p > 0.0f);
  const bool one_set = lora.size() == 1 && lora[0].first == 0 && lora[0].count == T;
  if (training && !one_set) throw Error(ErrorCode::EngineFailed, "training runs every row through one set of adapters");
  const LoraAdapter* adapter = one_set && lora[0].set ? lora[0].set->layers[l][p].get() : nullptr;
  if (!training && !adapter) {  // each run of rows through its adapters: the bits each row gets alone
    if (y) linear(x, T, weight, bias, y);
    for (const LoraRun& run : lora) {
      const LoraAdapter* own = run.set ? run.set->layers[l][p].get() : nullptr;
      if (own) apply_lora(x + size_t(run.first) * in, run.count, *own, y + size_t(run.first) * out, out);
    }
    return;
  }
  if (!adapter) {
    if (y) linear(x, T, weight, bias, y);
    return;
  }
  // t = A x̃ first, then the frozen product adds the bias and s t Bᵀ to each block of y it finishes.
  const size_t r = size_t(adapter->rank);
  std::vector<float> own_t;
  std::vector<float>& t = keep ? a.lora_t[p] : own_t;
  if (keep && recompute) {
    if (t.size() != size_t(T) * r) throw Error(ErrorCode::EngineFailed, "a recomputed block needs its kept A x̃");
    if (y) linear(x, T, weight, bias, y, adapter, t.data());
    return;
  }
  t.resize(size_t(T) * r);
  if (dropout && dropout->p > 0.0f) {
    // One draw of the generator keys this mask; its elements come from their counters, in parallel,
    // and it is kept as bits (padded for Kernels::dropout_apply's reads). Each task drops a block of
    // rows into its own buffer and multiplies them by A there, so the dropped input stays in cache.
    std::vector<uint8_t>& mask = a.lora_mask[p];
    mask.resize(size_t(T) * in / 8 + 8);
    const uint64_t key = dropout->random->next();
    const uint64_t threshold = uint64_t(std::ldexp(double(dropout->p), 64));  // p < 1: below 2⁶⁴
    const float kept = 1.0f / (1.0f - dropout->p);
    constexpr size_t kRows = 32;  // a multiple of 8: blocks start on whole bytes of the mask
    const Kernels& k = *kernels_;
    const RowSpans a_rows = dense_rows(adapter->a.data(), in);
    pool_->parallel_for((size_t(T) + kRows - 1) / kRows, [&](size_t begin, size_t end, size_t) {
      Floats dropped(kRows * in);
      for (size_t block = begin; block < end; block++) {
        const size_t first = block * kRows, n = std::min(kRows, size_t(T) - first);
        k.dropout_mask(key, first * in, n * in, threshold, kept, x + first * in, mask.data() + first * in / 8,
                       dropped.data());
        multiply_transposed(k, n, r, in, dropped.data(), in, a_rows, t.data() + first * r, r);
      }
    });
  } else {
    apply_lora(x, T, *adapter, nullptr, out, t.data());  // t only
  }
  if (y) linear(x, T, weight, bias, y, adapter, t.data());
}

void LlamaModel::project_backward(int l, int p, const float* x, const float* dy, int T, const LoraSet& lora,
                                  float dropout, const BlockActivations& a, float* dx, LoraGradient& grad) const {
  const Weight& weight = projection(layers_[l], p);
  const LoraAdapter* adapter = lora.layers[l][p].get();
  if (!adapter) {
    linear_backward(dy, T, weight, dx);
    return;
  }
  const Kernels& k = *kernels_;
  const size_t r = size_t(adapter->rank), in = weight.cols(), out = weight.rows(), rows = size_t(T);
  const float s = adapter->scale;
  const std::vector<float>& lora_t = a.lora_t[p];
  const bool dropped = dropout > 0.0f;
  const uint8_t* mask = a.lora_mask[p].data();
  const float kept = 1.0f / (1.0f - dropout);
  // The dropped input x̃ as the forward pass had it, made a span at a time where a product reads it.
  const RowSpans x_rows = dropped ? RowSpans([&](size_t row, size_t col, size_t count, float* scratch) {
    k.dropout_apply(mask, row * in + col, count, kept, x + row * in + col, scratch, false);
    return static_cast<const float*>(scratch);
  })
                                  : dense_rows(x, in);
  // Four matrix products, each laid out so that its output is wide (in or out columns, not r).
  std::vector<float> own_transposed;  // Bᵀ [r × out], as kept beside B (else made here)
  const float* b_transposed = adapter->b_transposed.data();
  if (adapter->b_transposed.size() != adapter->b.size()) {
    own_transposed.resize(r * out);
    for (size_t o = 0; o < out; o++)
      for (size_t j = 0; j < r; j++) own_transposed[j * out + o] = adapter->b[o * r + j];
    b_transposed = own_transposed.data();
  }
  std::vector<float> u(rows * r);  // dy B [T × r], then s dy B
  multiply_transposed(k, *pool_, rows, r, out, dy, out, dense_rows(b_transposed, out), u.data(), r);
  for (float& value : u) value *= s;
  // dx += dy W, and onto each of its blocks as the frozen product finishes it, s u A (through the
  // dropout mask, x̃'s gradient reaching x).
  LowRankTail tail(k, dx, rows, in, r, 1.0f, u.data(), adapter->a.data(), false);
  if (dropped) tail.through_mask(mask, kept);
  linear_backward(dy, T, weight, dx, &tail);
  // s goes into A x̃ [T × r] rather than into dy [T × out]: a copy of r columns, not of out.
  std::vector<float> scaled_t(lora_t.size()), grad_b_transposed(r * out, 0.0f);
  for (size_t i = 0; i < scaled_t.size(); i++) scaled_t[i] = s * lora_t[i];
  multiply_add(k, *pool_, r, out, rows, scaled_t.data(), r, true, dense_rows(dy, out), grad_b_transposed.data(),
               out);  // (dB)ᵀ = (s A x̃)ᵀ dy
  for (size_t o = 0; o < out; o++)
    for (size_t j = 0; j < r; j++) grad.b[o * r + j] += grad_b_transposed[j * out + o];
  multiply_add(k, *pool_, r, in, rows, u.data(), r, true, x_rows, grad.a.data(), in);  // dA += s uᵀ x̃
}

// ---- The block ----------------------------------------------------------------------------------

void LlamaModel::block_forward(int l, float* x, const BlockRows& rows, const ops::RopeTable& rope,
                               const Dropout* dropout, BlockActivations& a, bool keep, bool recompute) const {
  const std::vector<LoraRun>& lora = rows.lora;
  const ModelConfig& c = config_;
  const int T = rows.count, H = c.hidden_size, D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads;
  const int Q = Hq * D, KV = Hkv * D, I = c.intermediate_size;
  const Kernels& k = *kernels_;
  const Layer& layer = layers_[l];
  const size_t hidden = size_t(T) * H;
  std::vector<float> scratch;

  // Attention: x += o(attention(rope(q(n)), rope(k(n)), v(n))), n = rms_norm(x).
  if (keep) a.x_in.assign(x, x + hidden);
  a.n1.resize(hidden);
  a.rstd1.resize(T);
  ops::rms_norm(k, x, T, H, vector_of(layer.input_norm, scratch, k), c.rms_norm_eps, a.n1.data(), a.rstd1.data());
  a.q.resize(size_t(T) * Q);
  a.k.resize(size_t(T) * KV);
  a.v.resize(size_t(T) * KV);
  project(l, kQ, a.n1.data(), T, c.attention_bias ? &layer.q_bias : nullptr, lora, dropout, a.q.data(), a, keep, recompute);
  project(l, kK, a.n1.data(), T, c.attention_bias ? &layer.k_bias : nullptr, lora, dropout, a.k.data(), a, keep, recompute);
  project(l, kV, a.n1.data(), T, c.attention_bias ? &layer.v_bias : nullptr, lora, dropout, a.v.data(), a, keep, recompute);
  std::vector<ops::AttentionSpan> spans(T);
  for (int t = 0; t < T; t++) {
    ops::rope(rope, &a.q[size_t(t) * Q], Hq, D, t, 1.0f);
    ops::rope(rope, &a.k[size_t(t) * KV], Hkv, D, t, 1.0f);
    if (rows.cache.empty()) {  // training: the rows of its own sequence up to itself
      const int first = rows.first[t];
      spans[t] = {&a.k[size_t(first) * KV], &a.v[size_t(first) * KV], t - first + 1};
    } else {  // inference: its key and value join its sequence's cache, which it attends to
      KVCache& cache = *rows.cache[t];
      const size_t at = size_t(rows.position[t]) * KV;
      std::memcpy(cache.keys[l].data() + at, &a.k[size_t(t) * KV], sizeof(float) * KV);
      std::memcpy(cache.values[l].data() + at, &a.v[size_t(t) * KV], sizeof(float) * KV);
      spans[t] = {cache.keys[l].data(), cache.values[l].data(), rows.position[t] + 1};
    }
  }
  if (recompute) {
    if (a.attn.size() != size_t(T) * Q || a.lse.size() != size_t(T) * Hq)
      throw Error(ErrorCode::EngineFailed, "a recomputed block needs its kept attention");
  } else {
    a.attn.resize(size_t(T) * Q);
    if (keep) a.lse.resize(size_t(T) * Hq);
    ops::attention(*pool_, k, a.q.data(), T, Hq, Hkv, D, spans, a.attn.data(), keep ? a.lse.data() : nullptr);
  }
  std::vector<float> projected(hidden);
  project(l, kO, a.attn.data(), T, nullptr, lora, dropout, projected.data(), a, keep, recompute);
  for (size_t i = 0; i < hidden; i++) x[i] += projected[i];

  // MLP: x += down(silu(gate(n)) · up(n)), n = rms_norm(x).
  if (keep) a.x_mid.assign(x, x + hidden);
  a.n2.resize(hidden);
  a.rstd2.resize(T);
  ops::rms_norm(k, x, T, H, vector_of(layer.post_attention_norm, scratch, k), c.rms_norm_eps, a.n2.data(),
                a.rstd2.data());
  a.gate.resize(size_t(T) * I);
  a.up.resize(size_t(T) * I);
  project(l, kGate, a.n2.data(), T, nullptr, lora, dropout, a.gate.data(), a, keep, recompute);
  project(l, kUp, a.n2.data(), T, nullptr, lora, dropout, a.up.data(), a, keep, recompute);
  float* act = a.gate.data();  // inference: in place; training keeps gate for the backward pass
  if (keep) {
    a.act.resize(a.gate.size());
    act = a.act.data();
  }
  ops::swiglu(*pool_, k, a.gate.data(), a.up.data(), a.gate.size(), act);
  if (recompute) return;  // the down projection only makes the output (its A x̃ and mask are kept)
  project(l, kDown, act, T, nullptr, lora, dropout, projected.data(), a, keep, recompute);
  for (size_t i = 0; i < hidden; i++) x[i] += projected[i];
}

void LlamaModel::block_backward(int l, const BlockRows& rows, const ops::RopeTable& rope, const LoraSet& lora,
                                float dropout, const BlockActivations& a, float* dx,
                                std::array<LoraGradient, kProjections>& grads) const {
  const ModelConfig& c = config_;
  const int T = rows.count, H = c.hidden_size, D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads;
  const int Q = Hq * D, KV = Hkv * D, I = c.intermediate_size;
  const Kernels& k = *kernels_;
  const Layer& layer = layers_[l];
  std::vector<float> scratch;

  // MLP: x_out = x_mid + down(silu(gate)·up).
  std::vector<float> d_act(size_t(T) * I, 0.0f);
  Floats d_gate(size_t(T) * I), d_up(size_t(T) * I);
  std::vector<float> dn(size_t(T) * H, 0.0f);
  project_backward(l, kDown, a.act.data(), dx, T, lora, dropout, a, d_act.data(), grads[kDown]);
  ops::swiglu_backward(*pool_, k, d_act.data(), a.gate.data(), a.up.data(), d_act.size(), d_gate.data(), d_up.data());
  project_backward(l, kGate, a.n2.data(), d_gate.data(), T, lora, dropout, a, dn.data(), grads[kGate]);
  project_backward(l, kUp, a.n2.data(), d_up.data(), T, lora, dropout, a, dn.data(), grads[kUp]);
  ops::rms_norm_backward(k, dn.data(), a.x_mid.data(), T, H, vector_of(layer.post_attention_norm, scratch, k),
                         a.rstd2.data(), dx);  // dx is now d x_mid

  // Attention: x_mid = x_in + o(attention).
  std::vector<float> d_attn(size_t(T) * Q, 0.0f), dq(size_t(T) * Q, 0.0f), dk(size_t(T) * KV, 0.0f),
      dv(size_t(T) * KV, 0.0f);
  project_backward(l, kO, a.attn.data(), dx, T, lora, dropout, a, d_attn.data(), grads[kO]);
  ops::attention_backward(*pool_, k, a.q.data(), a.k.data(), a.v.data(), a.lse.data(), d_attn.data(), T, rows.first,
                          Hq, Hkv, D, dq.data(), dk.data(), dv.data());
  for (int t = 0; t < T; t++) {  // back through RoPE: the inverse rotation
    ops::rope(rope, &dq[size_t(t) * Q], Hq, D, t, -1.0f);
    ops::rope(rope, &dk[size_t(t) * KV], Hkv, D, t, -1.0f);
  }
  std::fill(dn.begin(), dn.end(), 0.0f);
  project_backward(l, kQ, a.n1.data(), dq.data(), T, lora, dropout, a, dn.data(), grads[kQ]);
  project_backward(l, kK, a.n1.data(), dk.data(), T, lora, dropout, a, dn.data(), grads[kK]);
  project_backward(l, kV, a.n1.data(), dv.data(), T, lora, dropout, a, dn.data(), grads[kV]);
  ops::rms_norm_backward(k, dn.data(), a.x_in.data(), T, H, vector_of(layer.input_norm, scratch, k), a.rstd1.data(),
                         dx);  // d x_in
}

// ---- The head and the loss ------------------------------------------------------------------------

LlamaModel::HeadLoss LlamaModel::head_loss(const float* hidden, const std::vector<int>& rows,
                                           const std::vector<int32_t>& targets, float gradient_scale,
                                           float* dh) const {
  const int H = config_.hidden_size, V = config_.vocab_size;
  // At most 64 MiB of logits at a time (336 rows of a 49,152-token vocabulary, 104 of 151,936), and at
  // least 32 rows: each chunk decodes the whole head twice (its product and its input gradient), which
  // at 16 MiB cost a sixth of a Qwen2.5-0.5B-shaped training step.
  // The rows are cut evenly (1,024 rows of SmolLM2 as 4 × 256, not 3 × 336 and 16: a chunk of 16 rows
  // decoded the whole head twice for little work).
  const size_t most = std::max<size_t>(32, (size_t(64) << 20) / (size_t(V) * sizeof(float)) / 8 * 8);
  const size_t chunks = std::max<size_t>(1, (rows.size() + most - 1) / most);
  const size_t even = ((rows.size() + chunks - 1) / chunks + 7) / 8 * 8;  // at most `most`, a multiple of 8
  const int chunk = int(std::max<size_t>(1, std::min(even, rows.size())));  // no larger than the rows
  std::vector<float> gathered(size_t(chunk) * H), logits(size_t(chunk) * V), d_gathered;
  std::vector<ops::CrossEntropy> results(chunk);
  HeadLoss result;
  for (size_t c0 = 0; c0 < rows.size(); c0 += size_t(chunk)) {
    const int n = int(std::min<size_t>(size_t(chunk), rows.size() - c0));
    for (int r = 0; r < n; r++)
      std::copy_n(hidden + size_t(rows[c0 + r]) * H, H, gathered.begin() + size_t(r) * H);
    head(gathered.data(), n, logits.data());
    pool_->parallel_for(size_t(n), [&](size_t begin, size_t end, size_t) {
      for (size_t r = begin; r < end; r++)
        results[r] = ops::cross_entropy(*kernels_, &logits[r * V], V, targets[c0 + r], gradient_scale);
    });
    for (int r = 0; r < n; r++) {  // in order, whatever the threads
      result.total += results[size_t(r)].loss;
      result.correct += results[size_t(r)].correct ? 1 : 0;
    }
    if (!dh) continue;
    d_gathered.assign(size_t(n) * H, 0.0f);
    linear_backward(logits.data(), n, head_weight(), d_gathered.data());
    for (int r = 0; r < n; r++)
      kernels_->axpy(1.0f, &d_gathered[size_t(r) * H], dh + size_t(rows[c0 + r]) * H, H);
  }
  return result;
}

}  // namespace tunekit
