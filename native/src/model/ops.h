// The decoder's operations, each forward next to its backward, in fp32 as Hugging Face transformers
// computes them (models/llama/modeling_llama.py). Inference and training call these same functions,
// so a forward pass gives the same bits whichever of them runs it.
//
// Shapes: T rows (tokens; in a batch, the rows of several sequences one after another), H hidden,
// D head_dim, Hq / Hkv query / key-value heads, Q = Hq·D, KV = Hkv·D, V vocabulary.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "util/thread_pool.h"

namespace tunekit::ops {

// ---- RMSNorm (LlamaRMSNorm) ---------------------------------------------------------------------

// y = w ⊙ x · r with r = 1/√(mean(x²) + ε), per row; x, y [T × H]. `rstd` [T], when given, keeps r.
void rms_norm(const Kernels& k, const float* x, int T, int H, const float* w, float eps, float* y, float* rstd);
// dx [T × H] += r·(w ⊙ dy) − x·r³·Σ(w ⊙ dy ⊙ x)/H.
void rms_norm_backward(const Kernels& k, const float* dy, const float* x, int T, int H, const float* w,
                       const float* rstd, float* dx);

// ---- Rotary position embedding (rotate_half) ----------------------------------------------------

// cos and sin of each row's angles [T × D/2], the attention scaling already applied.
struct RopeTable {
  int half = 0;
  std::vector<float> cos, sin;
};
// angle = position · inv_freq[i], in fp32 as transformers computes it.
RopeTable rope_table(const std::vector<int>& positions, const std::vector<float>& inv_freq, float scaling);
// Rotates the `heads` vectors [heads × D] of row t: (x1, x2) → (x1·cos − x2·sin, x2·cos + x1·sin) on
// the two halves of each head. The backward pass applies the transpose, the rotation back: direction −1.
void rope(const RopeTable& table, float* vectors, int heads, int D, int t, float direction);

// ---- SwiGLU (LlamaMLP's act_fn(gate) * up) -------------------------------------------------------

// act = silu(gate) · up = gate / (1 + e^−gate) · up, n values; `act` may be `gate` itself.
// Runs on the pool in chunks, through the kernel table's loop where it has one.
void swiglu(ThreadPool& pool, const Kernels& k, const float* gate, const float* up, size_t n, float* act);
// With σ = sigmoid(gate): d_up = d_act · gate · σ, d_gate = d_act · up · σ · (1 + gate · (1 − σ)).
void swiglu_backward(ThreadPool& pool, const Kernels& k, const float* d_act, const float* gate, const float* up,
                     size_t n, float* d_gate, float* d_up);

// ---- Causal attention with grouped-query heads --------------------------------------------------

// The keys and values one row attends to: `count` rows of [KV] from `keys` and `values` (its own
// sequence, up to and including its own position).
struct AttentionSpan {
  const float* keys;
  const float* values;
  int count;
};
// out [T × Q] = softmax(q·Kᵀ / √D) · V per (row, head), query head h reading key-value head
// h / (Hq / Hkv). `lse` [T × Hq], when given, keeps each softmax's log-sum-exp for the backward pass.
void attention(ThreadPool& pool, const Kernels& k, const float* q, int T, int Hq, int Hkv, int D,
               const std::vector<AttentionSpan>& spans, float* out, float* lse);
// The backward pass over packed sequences whose keys and values are the rows of `keys`, `values`
// [T × KV] (row t attends to rows first[t] … t). P = exp(score − lse); dP = d_out·v;
// dS = P (dP − Σ P dP); dq += dS·k / √D; dk += dS·q / √D; dv += P·d_out. One key-value head per task,
// so each gradient row of k and v has a single writer.
void attention_backward(ThreadPool& pool, const Kernels& k, const float* q, const float* keys, const float* values,
                        const float* lse, const float* d_out, int T, const std::vector<int>& first, int Hq, int Hkv,
                        int D, float* dq, float* dk, float* dv);

// ---- Softmax cross-entropy of one row of logits --------------------------------------------------

struct CrossEntropy {
  double loss = 0.0;     // log-sum-exp − logit[label]
  bool correct = false;  // the first argmax is the label
};
// With `gradient_scale` > 0 the row is overwritten with its gradient (softmax − onehot) · scale.
// The exponentials are the kernels' (exp_sum, exp_scaled) where they have them, else std::exp in double.
CrossEntropy cross_entropy(const Kernels& k, float* logits, int V, int32_t label, float gradient_scale);

}  // namespace tunekit::ops
