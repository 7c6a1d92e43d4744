// Training: the decoder's forward pass keeping what the backward pass needs, and the backward pass
// itself, each op's backward written next to the forward it inverts. Only the LoRA matrices receive
// gradients; every base weight, norm and the embedding stay frozen. All in fp32.
//
// Shapes: T rows (the tokens of every packed sequence), H hidden, D head_dim, Hq / Hkv heads,
// Q = Hq·D, KV = Hkv·D, I intermediate, r a LoRA rank.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "model/llama.h"

namespace tunekit {

namespace {

// What one layer's forward keeps for its backward.
struct LayerActivations {
  std::vector<float> x_in, n1, rstd1;     // block input, its norm, 1/rms per row
  std::vector<float> q, k, v;             // after RoPE (q, k) [T × Q], [T × KV]
  std::vector<float> lse;                 // attention log-sum-exp per (row, head) [T × Hq]
  std::vector<float> attn;                // attention output [T × Q]
  std::vector<float> x_mid, n2, rstd2;    // after the attention residual, its norm
  std::vector<float> gate, up, act;       // [T × I]: gate and up projections, silu(gate)·up
  std::array<std::vector<float>, kProjections> lora_t;     // A·dropout(x) per adapted projection [T × r]
  std::array<std::vector<float>, kProjections> lora_mask;  // dropout's keep / (1 − p) per input [T × in]
};

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

// dx[t] += Σ_o dy[t][o] · W[o]: a packed matrix product from kGemmRows rows on (W as it is stored,
// [out × in], is the product's right operand); for fewer rows each thread takes a range of rows and
// streams W once, four rows of W at a time so that each row of dx is read and written once per four.
void LlamaModel::linear_backward(const float* dy, int m, const Weight& weight, float* dx) const {
  const size_t N = weight.rows(), K = weight.cols();
  const Kernels& k = *kernels_;
  if (m >= kGemmRows) {
    multiply_add(k, *pool_, size_t(m), K, N, dy, N, false, weight_rows(weight), dx, K);
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
}

LlamaModel::Gradients LlamaModel::loss_and_gradients(const std::vector<int32_t>& tokens,
                                                     const std::vector<int32_t>& labels,
                                                     const std::vector<int>& lengths, bool checkpointing) const {
  return train_pass(tokens, labels, lengths, 0.0f, nullptr, true, checkpointing);
}

// One forward and backward pass. `mean`: gradients of the mean token loss, else of the sum. With
// dropout > 0, each adapter's input is dropped (PEFT: lora_B(lora_A(dropout(x)))) with `random`.
LlamaModel::Gradients LlamaModel::train_pass(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                                             const std::vector<int>& lengths, float dropout, Random* random,
                                             bool mean, bool checkpointing) const {
  const ModelConfig& c = config_;
  check_batch(tokens, labels, lengths);
  const std::shared_ptr<const LoraSet> lora = this->lora();
  if (!lora) throw Error(ErrorCode::NoAdapter, "no LoRA adapter is attached");

  const int T = int(tokens.size()), H = c.hidden_size, D = c.head_dim, Hq = c.num_heads, Hkv = c.num_kv_heads;
  const int Q = Hq * D, KV = Hkv * D, I = c.intermediate_size, V = c.vocab_size, half = D / 2, group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  const Kernels& k = *kernels_;

  // Each row's sequence start and position.
  std::vector<int> start(T), position(T);
  for (int s = 0, row = 0; s < int(lengths.size()); s++)
    for (int t = 0; t < lengths[s]; t++, row++) {
      start[row] = row - t;
      position[row] = t;
    }
  std::vector<float> cos_table(size_t(T) * half), sin_table(size_t(T) * half);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < half; i++) {
      const float angle = float(position[t]) * c.inv_freq[i];
      cos_table[size_t(t) * half + i] = std::cos(angle) * c.attention_scaling;
      sin_table[size_t(t) * half + i] = std::sin(angle) * c.attention_scaling;
    }

  // The generator dropout draws from: the caller's, or a replay of it when recomputing a block.
  Random* layer_random = random;

  // ---- Building blocks, forward and backward side by side ----

  // RMSNorm: y = w ⊙ x · r, r = 1/√(mean(x²) + ε).
  auto norm_forward = [&](const float* x, const Weight& weight, float* y, float* rstd) {
    std::vector<float> scratch(H);
    const float* w = weight.row(0, scratch.data(), k);
    for (int t = 0; t < T; t++) {
      const float* in = x + size_t(t) * H;
      const float r = 1.0f / std::sqrt(k.dot(in, in, H) / float(H) + c.rms_norm_eps);
      rstd[t] = r;
      for (int i = 0; i < H; i++) y[size_t(t) * H + i] = w[i] * (in[i] * r);
    }
  };
  // dx += r·(w⊙dy) − x·r³·Σ(w⊙dy⊙x)/H
  auto norm_backward = [&](const float* dy, const float* x, const Weight& weight, const float* rstd, float* dx) {
    std::vector<float> scratch(H), wdy(H);
    const float* w = weight.row(0, scratch.data(), k);
    for (int t = 0; t < T; t++) {
      const float* in = x + size_t(t) * H;
      const float r = rstd[t];
      for (int i = 0; i < H; i++) wdy[i] = w[i] * dy[size_t(t) * H + i];
      const float dot = k.dot(wdy.data(), in, H);
      const float coefficient = r * r * r * dot / float(H);
      for (int i = 0; i < H; i++) dx[size_t(t) * H + i] += r * wdy[i] - in[i] * coefficient;
    }
  };
  // RoPE on the two halves of each head, and its transpose (the inverse rotation) for gradients.
  auto rope = [&](float* vectors, int heads, int t, float direction) {
    const float* cos_row = &cos_table[size_t(t) * half];
    const float* sin_row = &sin_table[size_t(t) * half];
    for (int h = 0; h < heads; h++) {
      float* v = vectors + size_t(h) * D;
      for (int i = 0; i < half; i++) {
        const float x1 = v[i], x2 = v[i + half], s = direction * sin_row[i];
        v[i] = x1 * cos_row[i] - x2 * s;
        v[i + half] = x2 * cos_row[i] + x1 * s;
      }
    }
  };
  // A projection with its adapter: y = W x (+ b) + s·B(A dropout(x)); keeps A dropout(x) and the mask.
  auto project = [&](int l, int p, const float* x, const Weight* bias, float* y, LayerActivations& saved_layer) {
    const Weight& weight = projection(layers_[l], p);
    linear(x, T, weight, bias, y);
    const LoraAdapter* adapter = lora->layers[l][p].get();
    if (!adapter) return;
    const size_t r = size_t(adapter->rank), in = weight.cols(), out = weight.rows();
    std::vector<float>& lora_t = saved_layer.lora_t[p];
    lora_t.resize(size_t(T) * r);
    std::vector<float> dropped;
    if (dropout > 0.0f) {
      std::vector<float>& mask = saved_layer.lora_mask[p];
      mask.resize(size_t(T) * in);
      dropped.resize(size_t(T) * in);
      const float keep = 1.0f / (1.0f - dropout);
      for (size_t i = 0; i < mask.size(); i++) {
        mask[i] = layer_random->uniform() < double(dropout) ? 0.0f : keep;
        dropped[i] = x[i] * mask[i];
      }
      x = dropped.data();
    }
    apply_lora(x, T, *adapter, y, out, lora_t.data());
  };
  // Its backward: dx += Wᵀ dy + mask ⊙ s·Aᵀ(Bᵀ dy); dB += s·dyᵀ(A x̃); dA += s·(dy B)ᵀ x̃, x̃ = mask ⊙ x.
  auto project_backward = [&](int l, int p, const float* x, const float* dy, const LayerActivations& saved_layer,
                              float* dx, LoraGradient& grad) {
    const Weight& weight = projection(layers_[l], p);
    linear_backward(dy, T, weight, dx);
    const LoraAdapter* adapter = lora->layers[l][p].get();
    if (!adapter) return;
    const size_t r = size_t(adapter->rank), in = weight.cols(), out = weight.rows();
    const float s = adapter->scale;
    const std::vector<float>& lora_t = saved_layer.lora_t[p];
    const std::vector<float>& mask = saved_layer.lora_mask[p];
    const bool dropped = dropout > 0.0f;
    std::vector<float> x_dropped, dx_lora;
    if (dropped) {
      x_dropped.resize(size_t(T) * in);
      for (size_t i = 0; i < x_dropped.size(); i++) x_dropped[i] = x[i] * mask[i];
      x = x_dropped.data();
      dx_lora.assign(size_t(T) * in, 0.0f);
    }
    float* dx_target = dropped ? dx_lora.data() : dx;
    // Four matrix products, each laid out so that its output is wide (in or out columns, not r).
    std::vector<float> b_transposed(r * out);  // Bᵀ [r × out]
    for (size_t o = 0; o < out; o++)
      for (size_t j = 0; j < r; j++) b_transposed[j * out + o] = adapter->b[o * r + j];
    std::vector<float> u(size_t(T) * r);  // dy B [T × r]
    multiply_transposed(k, *pool_, size_t(T), r, out, dy, out, dense_rows(b_transposed.data(), out), u.data(), r);
    std::vector<float> scaled_dy(size_t(T) * out), grad_b_transposed(r * out, 0.0f);
    for (size_t i = 0; i < scaled_dy.size(); i++) scaled_dy[i] = s * dy[i];
    multiply_add(k, *pool_, r, out, size_t(T), lora_t.data(), r, true, dense_rows(scaled_dy.data(), out),
                 grad_b_transposed.data(), out);  // (dB)ᵀ = (A x̃)ᵀ s dy
    for (size_t o = 0; o < out; o++)
      for (size_t j = 0; j < r; j++) grad.b[o * r + j] += grad_b_transposed[j * out + o];
    for (float& value : u) value *= s;
    multiply_add(k, *pool_, r, in, size_t(T), u.data(), r, true, dense_rows(x, in), grad.a.data(), in);  // dA += s uᵀ x̃
    multiply_add(k, *pool_, size_t(T), in, r, u.data(), r, false, dense_rows(adapter->a.data(), in), dx_target,
                 in);  // dx += s u A
    if (dropped)
      for (size_t i = 0; i < dx_lora.size(); i++) dx[i] += dx_lora[i] * mask[i];
  };

  // ---- Forward, keeping activations ----

  // One block forward from its input x (updated in place to its output), filling `a`. Dropout masks
  // come from `layer_random`, so a recomputation from the same generator state repeats them exactly.
  std::vector<float> projected(size_t(T) * H);
  auto layer_forward = [&](int l, std::vector<float>& x, LayerActivations& a) {
    const Layer& layer = layers_[l];
    a.x_in = x;
    a.n1.resize(size_t(T) * H);
    a.rstd1.resize(T);
    norm_forward(x.data(), layer.input_norm, a.n1.data(), a.rstd1.data());
    a.q.resize(size_t(T) * Q);
    a.k.resize(size_t(T) * KV);
    a.v.resize(size_t(T) * KV);
    project(l, kQ, a.n1.data(), c.attention_bias ? &layer.q_bias : nullptr, a.q.data(), a);
    project(l, kK, a.n1.data(), c.attention_bias ? &layer.k_bias : nullptr, a.k.data(), a);
    project(l, kV, a.n1.data(), c.attention_bias ? &layer.v_bias : nullptr, a.v.data(), a);
    for (int t = 0; t < T; t++) {
      rope(&a.q[size_t(t) * Q], Hq, t, 1.0f);
      rope(&a.k[size_t(t) * KV], Hkv, t, 1.0f);
    }
    // Causal attention inside each sequence; the log-sum-exp of each row's scores is kept so the
    // backward pass can recompute the probabilities instead of storing them.
    a.attn.assign(size_t(T) * Q, 0.0f);
    a.lse.resize(size_t(T) * Hq);
    pool_->parallel_for(size_t(T) * Hq, [&](size_t begin, size_t end, size_t) {
      std::vector<float> scores(static_cast<size_t>(c.max_positions));
      for (size_t task = begin; task < end; task++) {
        const int t = int(task / Hq), h = int(task % Hq), kv = h / group, first = start[t];
        const float* query = &a.q[size_t(t) * Q + size_t(h) * D];
        float maximum = -std::numeric_limits<float>::infinity();
        for (int p = first; p <= t; p++) {
          scores[p - first] = k.dot(query, &a.k[size_t(p) * KV + size_t(kv) * D], D) * scale;
          maximum = std::max(maximum, scores[p - first]);
        }
        float sum = 0.0f;
        for (int p = first; p <= t; p++) sum += scores[p - first] = std::exp(scores[p - first] - maximum);
        a.lse[task] = maximum + std::log(sum);
        float* output = &a.attn[size_t(t) * Q + size_t(h) * D];
        for (int p = first; p <= t; p++) k.axpy(scores[p - first] / sum, &a.v[size_t(p) * KV + size_t(kv) * D], output, D);
      }
    });
    project(l, kO, a.attn.data(), nullptr, projected.data(), a);
    for (size_t i = 0; i < x.size(); i++) x[i] += projected[i];
    a.x_mid = x;
    a.n2.resize(size_t(T) * H);
    a.rstd2.resize(T);
    norm_forward(x.data(), layer.post_attention_norm, a.n2.data(), a.rstd2.data());
    a.gate.resize(size_t(T) * I);
    a.up.resize(size_t(T) * I);
    a.act.resize(size_t(T) * I);
    project(l, kGate, a.n2.data(), nullptr, a.gate.data(), a);
    project(l, kUp, a.n2.data(), nullptr, a.up.data(), a);
    for (size_t i = 0; i < a.act.size(); i++) a.act[i] = a.gate[i] * sigmoid(a.gate[i]) * a.up[i];
    project(l, kDown, a.act.data(), nullptr, projected.data(), a);
    for (size_t i = 0; i < x.size(); i++) x[i] += projected[i];
  };

  // With checkpointing only each block's input (and the dropout generator's state there) is kept;
  // the block's activations are recomputed from them in the backward pass.
  std::vector<LayerActivations> saved(checkpointing ? 1 : c.num_layers);
  std::vector<std::vector<float>> block_inputs(checkpointing ? c.num_layers : 0);
  std::vector<std::array<uint64_t, 4>> block_random(checkpointing ? c.num_layers : 0);
  std::vector<float> x(size_t(T) * H);
  for (int t = 0; t < T; t++) {
    const float* row = embed_.row(size_t(tokens[t]), x.data() + size_t(t) * H, k);
    if (row != x.data() + size_t(t) * H) std::memcpy(x.data() + size_t(t) * H, row, sizeof(float) * H);
  }
  for (int l = 0; l < c.num_layers; l++) {
    if (checkpointing) {
      block_inputs[l] = x;
      if (random) block_random[l] = random->state();
      layer_forward(l, x, saved[0]);
    } else {
      layer_forward(l, x, saved[l]);
    }
  }
  if (checkpointing) saved[0] = LayerActivations{};
  std::vector<float> final_normed(size_t(T) * H), final_rstd(T);
  norm_forward(x.data(), final_norm_, final_normed.data(), final_rstd.data());

  // ---- Loss: mean cross-entropy over the labelled next tokens of each sequence ----

  Gradients result;
  std::vector<int> predicting;  // rows whose next label counts
  for (int t = 0; t < T; t++) {
    const bool last_of_sequence = t + 1 == T || start[t + 1] != start[t];
    if (!last_of_sequence && labels[t + 1] != -100) predicting.push_back(t);
  }
  result.tokens = predicting.size();
  result.layers.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; l++)
    for (int p = 0; p < kProjections; p++)
      if (const LoraAdapter* adapter = lora->layers[l][p].get()) {
        result.layers[l][p].a.assign(adapter->a.size(), 0.0f);
        result.layers[l][p].b.assign(adapter->b.size(), 0.0f);
      }
  if (predicting.empty()) return result;

  // dlogits = (softmax − onehot) / N, pushed straight through the frozen head into dh, in chunks of
  // rows: at most 16 MiB of logits at a time (80 rows of a 49,152-token vocabulary), and at least 32
  // rows, since the head's matrix products reuse each decoded row of the head once per chunk row.
  std::vector<float> dh(size_t(T) * H, 0.0f);
  const Weight& head_w = head_weight();
  const int chunk = int(std::max<size_t>(32, (size_t(16) << 20) / (size_t(V) * sizeof(float)) / 8 * 8));
  std::vector<float> rows(size_t(chunk) * H), logits(size_t(chunk) * V);
  std::vector<double> row_loss(chunk);
  double total = 0.0;
  const float inverse = mean ? 1.0f / float(predicting.size()) : 1.0f;
  for (size_t c0 = 0; c0 < predicting.size(); c0 += chunk) {
    const int n = int(std::min<size_t>(chunk, predicting.size() - c0));
    for (int r = 0; r < n; r++)
      std::copy_n(&final_normed[size_t(predicting[c0 + r]) * H], H, &rows[size_t(r) * H]);
    head(rows.data(), n, logits.data());
    std::vector<float> dchunk(size_t(n) * H, 0.0f);
    pool_->parallel_for(size_t(n), [&](size_t begin, size_t end, size_t) {
      for (size_t r = begin; r < end; r++) {
        float* row = &logits[r * V];
        const int32_t label = labels[predicting[c0 + r] + 1];
        const float maximum = *std::max_element(row, row + V);
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += std::exp(double(row[v] - maximum));
        const double lse = double(maximum) + std::log(sum);
        row_loss[r] = lse - double(row[label]);
        for (int v = 0; v < V; v++) row[v] = float(std::exp(double(row[v]) - lse)) * inverse;
        row[label] -= inverse;
      }
    });
    for (int r = 0; r < n; r++) total += row_loss[size_t(r)];  // in order, whatever the threads
    linear_backward(logits.data(), n, head_w, dchunk.data());
    for (int r = 0; r < n; r++)
      k.axpy(1.0f, &dchunk[size_t(r) * H], &dh[size_t(predicting[c0 + r]) * H], H);
  }
  result.loss = total / double(predicting.size());

  // ---- Backward, layer by layer from the top ----

  std::vector<float> dx(size_t(T) * H, 0.0f);
  norm_backward(dh.data(), x.data(), final_norm_, final_rstd.data(), dx.data());
  std::vector<float> dn(size_t(T) * H), d_act(size_t(T) * I), d_gate(size_t(T) * I), d_up(size_t(T) * I);
  std::vector<float> d_attn(size_t(T) * Q), dq(size_t(T) * Q), dk(size_t(T) * KV), dv(size_t(T) * KV);
  Random replay(0);
  for (int l = c.num_layers - 1; l >= 0; l--) {
    const Layer& layer = layers_[l];
    if (checkpointing) {  // recompute this block's activations, with the same dropout masks
      if (random) {
        replay.set_state(block_random[l]);
        layer_random = &replay;
      }
      std::vector<float> block = block_inputs[l];
      layer_forward(l, block, saved[0]);
      block_inputs[l].clear();
      block_inputs[l].shrink_to_fit();
    }
    LayerActivations& a = checkpointing ? saved[0] : saved[l];
    auto& grads = result.layers[l];

    // MLP: x_out = x_mid + down(silu(gate)·up).
    std::fill(d_act.begin(), d_act.end(), 0.0f);
    project_backward(l, kDown, a.act.data(), dx.data(), a, d_act.data(), grads[kDown]);
    for (size_t i = 0; i < d_act.size(); i++) {
      const float g = a.gate[i], sg = sigmoid(g);
      d_up[i] = d_act[i] * g * sg;
      d_gate[i] = d_act[i] * a.up[i] * sg * (1.0f + g * (1.0f - sg));
    }
    std::fill(dn.begin(), dn.end(), 0.0f);
    project_backward(l, kGate, a.n2.data(), d_gate.data(), a, dn.data(), grads[kGate]);
    project_backward(l, kUp, a.n2.data(), d_up.data(), a, dn.data(), grads[kUp]);
    norm_backward(dn.data(), a.x_mid.data(), layer.post_attention_norm, a.rstd2.data(), dx.data());  // dx is now d x_mid

    // Attention: x_mid = x_in + o(attention).
    std::fill(d_attn.begin(), d_attn.end(), 0.0f);
    project_backward(l, kO, a.attn.data(), dx.data(), a, d_attn.data(), grads[kO]);
    std::fill(dq.begin(), dq.end(), 0.0f);
    std::fill(dk.begin(), dk.end(), 0.0f);
    std::fill(dv.begin(), dv.end(), 0.0f);
    // One key-value head per task, so the gradients of its keys and values have a single writer.
    // P = exp(score − lse); dP = d_out·v; dS = P (dP − Σ P dP); dq = s Σ dS k; dk += s dS q; dv += P d_out.
    pool_->parallel_for(size_t(Hkv), [&](size_t begin, size_t end, size_t) {
      std::vector<float> probabilities(static_cast<size_t>(c.max_positions)), dp(probabilities.size());
      for (size_t kv = begin; kv < end; kv++)
        for (int h = int(kv) * group; h < int(kv + 1) * group; h++)
          for (int t = 0; t < T; t++) {
            const int first = start[t];
            const float* query = &a.q[size_t(t) * Q + size_t(h) * D];
            const float* d_out = &d_attn[size_t(t) * Q + size_t(h) * D];
            const float lse = a.lse[size_t(t) * Hq + h];
            float weighted = 0.0f;
            for (int p = first; p <= t; p++) {
              const float* key = &a.k[size_t(p) * KV + kv * D];
              const float* value = &a.v[size_t(p) * KV + kv * D];
              probabilities[p - first] = std::exp(k.dot(query, key, D) * scale - lse);
              dp[p - first] = k.dot(d_out, value, D);
              weighted += probabilities[p - first] * dp[p - first];
            }
            float* d_query = &dq[size_t(t) * Q + size_t(h) * D];
            for (int p = first; p <= t; p++) {
              const float probability = probabilities[p - first];
              const float ds = probability * (dp[p - first] - weighted) * scale;
              k.axpy(ds, &a.k[size_t(p) * KV + kv * D], d_query, D);
              k.axpy(ds, query, &dk[size_t(p) * KV + kv * D], D);
              k.axpy(probability, d_out, &dv[size_t(p) * KV + kv * D], D);
            }
          }
    });
    for (int t = 0; t < T; t++) {  // back through RoPE: the inverse rotation
      rope(&dq[size_t(t) * Q], Hq, t, -1.0f);
      rope(&dk[size_t(t) * KV], Hkv, t, -1.0f);
    }
    std::fill(dn.begin(), dn.end(), 0.0f);
    project_backward(l, kQ, a.n1.data(), dq.data(), a, dn.data(), grads[kQ]);
    project_backward(l, kK, a.n1.data(), dk.data(), a, dn.data(), grads[kK]);
    project_backward(l, kV, a.n1.data(), dv.data(), a, dn.data(), grads[kV]);
    norm_backward(dn.data(), a.x_in.data(), layer.input_norm, a.rstd1.data(), dx.data());  // d x_in
  }
  return result;
}


// ---- Accumulation and the optimizer ----------------------------------------------------------------

void LlamaModel::reset_training() {
  gradient_sums_.clear();
  gradient_tokens_ = 0;
  const std::array<uint64_t, 4> random = dropout_random_.state();
  optimizer_ = OptimizerState{};
  optimizer_.random = random;
}

void LlamaModel::seed_dropout(uint64_t seed) {
  std::lock_guard<std::mutex> lock(training_mutex_);
  dropout_random_ = Random(seed);
}

std::pair<double, size_t> LlamaModel::forward_backward(const std::vector<int32_t>& tokens,
                                                       const std::vector<int32_t>& labels,
                                                       const std::vector<int>& lengths, float dropout,
                                                       bool checkpointing) {
  if (!(dropout >= 0.0f && dropout < 1.0f)) throw Error(ErrorCode::InvalidArgument, "dropout must be in [0, 1)");
  std::lock_guard<std::mutex> lock(training_mutex_);
  Gradients gradients = train_pass(tokens, labels, lengths, dropout, &dropout_random_, false, checkpointing);
  if (gradient_sums_.empty()) {
    gradient_sums_ = std::move(gradients.layers);
  } else {
    for (size_t l = 0; l < gradient_sums_.size(); l++)
      for (int p = 0; p < kProjections; p++) {
        LoraGradient& sum = gradient_sums_[l][p];
        const LoraGradient& add = gradients.layers[l][p];
        for (size_t i = 0; i < sum.a.size(); i++) sum.a[i] += add.a[i];
        for (size_t i = 0; i < sum.b.size(); i++) sum.b[i] += add.b[i];
      }
  }
  gradient_tokens_ += gradients.tokens;
  return {gradients.loss, gradients.tokens};
}

// PyTorch's AdamW (torch/optim/adamw.py, single-tensor path): decoupled weight decay first, then the
// bias-corrected Adam update; clipping as torch.nn.utils.clip_grad_norm_ (coefficient max / (norm + 1e-6)).
double LlamaModel::optimizer_step(const AdamW& options) {
  std::lock_guard<std::mutex> lock(training_mutex_);
  const std::shared_ptr<const LoraSet> current = this->lora();
  if (!current) throw Error(ErrorCode::NoAdapter, "no LoRA adapter is attached");
  if (gradient_sums_.empty() || gradient_tokens_ == 0) {
    gradient_sums_.clear();
    gradient_tokens_ = 0;
    return 0.0;  // nothing was labelled since the last step: no update
  }
  const float inverse = 1.0f / float(gradient_tokens_);
  double squares = 0.0;
  for (auto& layer : gradient_sums_)
    for (LoraGradient& gradient : layer) {
      for (std::vector<float>* values : {&gradient.a, &gradient.b})
        for (float& value : *values) {
          value *= inverse;
          squares += double(value) * double(value);
        }
    }
  const double norm = std::sqrt(squares);
  float clip = 1.0f;
  if (options.max_grad_norm > 0.0f) clip = float(std::min(1.0, double(options.max_grad_norm) / (norm + 1e-6)));

  if (optimizer_.exp_avg.empty()) {
    optimizer_.exp_avg.resize(gradient_sums_.size());
    optimizer_.exp_avg_sq.resize(gradient_sums_.size());
    for (size_t l = 0; l < gradient_sums_.size(); l++)
      for (int p = 0; p < kProjections; p++) {
        optimizer_.exp_avg[l][p].a.assign(gradient_sums_[l][p].a.size(), 0.0f);
        optimizer_.exp_avg[l][p].b.assign(gradient_sums_[l][p].b.size(), 0.0f);
        optimizer_.exp_avg_sq[l][p].a.assign(gradient_sums_[l][p].a.size(), 0.0f);
        optimizer_.exp_avg_sq[l][p].b.assign(gradient_sums_[l][p].b.size(), 0.0f);
      }
  }
  optimizer_.step++;
  const float bias1 = 1.0f - float(std::pow(double(options.beta1), double(optimizer_.step)));
  const float bias2_sqrt = float(std::sqrt(1.0 - std::pow(double(options.beta2), double(optimizer_.step))));
  const float step_size = options.learning_rate / bias1;
  auto update = [&](std::vector<float>& param, const std::vector<float>& grad, std::vector<float>& m,
                    std::vector<float>& v) {
    for (size_t i = 0; i < param.size(); i++) {
      const float g = grad[i] * clip;
      param[i] *= 1.0f - options.learning_rate * options.weight_decay;
      m[i] = options.beta1 * m[i] + (1.0f - options.beta1) * g;
      v[i] = options.beta2 * v[i] + (1.0f - options.beta2) * g * g;
      param[i] -= step_size * m[i] / (std::sqrt(v[i]) / bias2_sqrt + options.eps);
    }
  };
  // The new weights go into a new set, swapped in whole: running inference keeps its snapshot.
  auto next = std::make_shared<LoraSet>();
  next->layers.resize(current->layers.size());
  for (size_t l = 0; l < current->layers.size(); l++)
    for (int p = 0; p < kProjections; p++) {
      const LoraAdapter* adapter = current->layers[l][p].get();
      if (!adapter) continue;
      auto updated = std::make_shared<LoraAdapter>(*adapter);
      update(updated->a, gradient_sums_[l][p].a, optimizer_.exp_avg[l][p].a, optimizer_.exp_avg_sq[l][p].a);
      update(updated->b, gradient_sums_[l][p].b, optimizer_.exp_avg[l][p].b, optimizer_.exp_avg_sq[l][p].b);
      next->layers[l][p] = std::move(updated);
    }
  std::atomic_store(&lora_, std::shared_ptr<const LoraSet>(std::move(next)));
  gradient_sums_.clear();
  gradient_tokens_ = 0;
  return norm;
}

LlamaModel::OptimizerState LlamaModel::optimizer_state() const {
  std::lock_guard<std::mutex> lock(training_mutex_);
  OptimizerState state = optimizer_;
  state.random = dropout_random_.state();
  return state;
}

void LlamaModel::set_optimizer_state(const OptimizerState& state) {
  std::lock_guard<std::mutex> lock(training_mutex_);
  const std::shared_ptr<const LoraSet> current = this->lora();
  if (!current) throw Error(ErrorCode::NoAdapter, "no LoRA adapter is attached");
  if (!state.exp_avg.empty()) {
    if (state.exp_avg.size() != current->layers.size() || state.exp_avg_sq.size() != current->layers.size())
      throw Error(ErrorCode::BadTrainingState, "optimizer state has the wrong layer count");
    for (size_t l = 0; l < current->layers.size(); l++)
      for (int p = 0; p < kProjections; p++) {
        const LoraAdapter* adapter = current->layers[l][p].get();
        const size_t a = adapter ? adapter->a.size() : 0, b = adapter ? adapter->b.size() : 0;
        if (state.exp_avg[l][p].a.size() != a || state.exp_avg[l][p].b.size() != b ||
            state.exp_avg_sq[l][p].a.size() != a || state.exp_avg_sq[l][p].b.size() != b)
          throw Error(ErrorCode::BadTrainingState, std::string("optimizer state of layer ") + std::to_string(l) + " " +
                                      kProjectionNames[p] + " does not match the adapter");
      }
  }
  optimizer_ = state;
  dropout_random_.set_state(state.random);
  gradient_sums_.clear();
  gradient_tokens_ = 0;
}

}  // namespace tunekit
