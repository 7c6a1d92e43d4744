#include "model/ops.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace tunekit::ops {

// ---- RMSNorm ------------------------------------------------------------------------------------

void rms_norm(const Kernels& k, const float* x, int T, int H, const float* w, float eps, float* y, float* rstd) {
  for (int t = 0; t < T; t++) {
    const float* in = x + size_t(t) * H;
    float* out = y + size_t(t) * H;
    const float r = 1.0f / std::sqrt(k.dot(in, in, H) / float(H) + eps);
    if (rstd) rstd[t] = r;
    for (int i = 0; i < H; i++) out[i] = w[i] * (in[i] * r);
  }
}

void rms_norm_backward(const Kernels& k, const float* dy, const float* x, int T, int H, const float* w,
                       const float* rstd, float* dx) {
  std::vector<float> wdy(H);
  for (int t = 0; t < T; t++) {
    const float* in = x + size_t(t) * H;
    const float r = rstd[t];
    for (int i = 0; i < H; i++) wdy[i] = w[i] * dy[size_t(t) * H + i];
    const float coefficient = r * r * r * k.dot(wdy.data(), in, H) / float(H);
    for (int i = 0; i < H; i++) dx[size_t(t) * H + i] += r * wdy[i] - in[i] * coefficient;
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------

RopeTable rope_table(const std::vector<int>& positions, const std::vector<float>& inv_freq, float scaling) {
  RopeTable table;
  table.half = int(inv_freq.size());
  table.cos.resize(positions.size() * inv_freq.size());
  table.sin.resize(table.cos.size());
  for (size_t t = 0; t < positions.size(); t++)
    for (int i = 0; i < table.half; i++) {
      const float angle = float(positions[t]) * inv_freq[i];  // fp32, as transformers computes it
      table.cos[t * table.half + i] = std::cos(angle) * scaling;
      table.sin[t * table.half + i] = std::sin(angle) * scaling;
    }
  return table;
}

void rope(const RopeTable& table, float* vectors, int heads, int D, int t, float direction) {
  const int half = table.half;
  const float* cos_row = &table.cos[size_t(t) * half];
  const float* sin_row = &table.sin[size_t(t) * half];
  for (int h = 0; h < heads; h++) {
    float* v = vectors + size_t(h) * D;
    for (int i = 0; i < half; i++) {
      const float x1 = v[i], x2 = v[i + half], s = direction * sin_row[i];
      v[i] = x1 * cos_row[i] - x2 * s;
      v[i + half] = x2 * cos_row[i] + x1 * s;
    }
  }
}

// ---- SwiGLU -------------------------------------------------------------------------------------

namespace {

void swiglu_loop(const float* gate, const float* up, size_t n, float* act) {
  for (size_t i = 0; i < n; i++) act[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void swiglu_backward_loop(const float* d_act, const float* gate, const float* up, size_t n, float* d_gate,
                          float* d_up) {
  for (size_t i = 0; i < n; i++) {
    const float g = gate[i], sg = 1.0f / (1.0f + std::exp(-g));
    d_up[i] = d_act[i] * g * sg;
    d_gate[i] = d_act[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
  }
}

// Elementwise work in chunks of kChunk values over the pool (each value its own: any cut gives the same bits).
constexpr size_t kChunk = size_t(1) << 14;

void chunked(ThreadPool& pool, size_t n, const std::function<void(size_t, size_t)>& body) {
  const size_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) {
    body(0, n);
    return;
  }
  pool.parallel_for(chunks, [&](size_t begin, size_t end, size_t) {
    for (size_t chunk = begin; chunk < end; chunk++) body(chunk * kChunk, std::min(kChunk, n - chunk * kChunk));
  });
}

}  // namespace

void swiglu(ThreadPool& pool, const Kernels& k, const float* gate, const float* up, size_t n, float* act) {
  const auto loop = k.swiglu ? k.swiglu : swiglu_loop;
  chunked(pool, n, [&](size_t first, size_t count) { loop(gate + first, up + first, count, act + first); });
}

void swiglu_backward(ThreadPool& pool, const Kernels& k, const float* d_act, const float* gate, const float* up,
                     size_t n, float* d_gate, float* d_up) {
  const auto loop = k.swiglu_backward ? k.swiglu_backward : swiglu_backward_loop;
  chunked(pool, n, [&](size_t first, size_t count) {
    loop(d_act + first, gate + first, up + first, count, d_gate + first, d_up + first);
  });
}

// ---- Attention ----------------------------------------------------------------------------------

void attention(ThreadPool& pool, const Kernels& k, const float* q, int T, int Hq, int Hkv, int D,
               const std::vector<AttentionSpan>& spans, float* out, float* lse) {
  const int Q = Hq * D, KV = Hkv * D, group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  int longest = 0;
  for (const AttentionSpan& span : spans) longest = std::max(longest, span.count);
  if (k.attention_rows && k.attention_head_dim(D)) {
    // Rows attending to the same keys, one more each (a sequence's rows in training and prefill), in
    // blocks that the kernel runs a few rows at a time; a task is a block on one head.
    constexpr int kBlock = 16;
    std::vector<std::pair<int, int>> blocks;  // first row, rows
    for (int t = 0; t < T; t++) {
      if (!blocks.empty()) {
        auto& [first, n] = blocks.back();
        const AttentionSpan& head = spans[first];
        if (n < kBlock && spans[t].keys == head.keys && spans[t].values == head.values &&
            spans[t].count == head.count + n) {
          n++;
          continue;
        }
      }
      blocks.emplace_back(t, 1);
    }
    pool.parallel_for(blocks.size() * Hq, [&](size_t begin, size_t end, size_t) {
      std::vector<float> scratch(4 * (size_t(longest) + kBlock)), own_lse(kBlock);
      for (size_t task = begin; task < end; task++) {
        const auto [t, n] = blocks[task / Hq];
        const int h = int(task % Hq);
        const size_t offset = size_t(h / group) * D, at = size_t(t) * Q + size_t(h) * D;
        float* row_lse = lse ? lse + size_t(t) * Hq + h : own_lse.data();
        k.attention_rows(q + at, Q, spans[t].keys + offset, spans[t].values + offset, KV, spans[t].count, n, D, scale,
                         out + at, row_lse, lse ? Hq : 1, scratch.data());
      }
    });
    return;
  }
  // One (row, head) pair per task.
  pool.parallel_for(size_t(T) * Hq, [&](size_t begin, size_t end, size_t) {
    std::vector<float> scores(static_cast<size_t>(longest));
    for (size_t task = begin; task < end; task++) {
      const int t = int(task / Hq), h = int(task % Hq), kv_head = h / group;
      const AttentionSpan& span = spans[t];
      const float* query = q + size_t(t) * Q + size_t(h) * D;
      float maximum = -std::numeric_limits<float>::infinity();
      for (int p = 0; p < span.count; p++) {
        scores[p] = k.dot(query, span.keys + size_t(p) * KV + size_t(kv_head) * D, D) * scale;
        maximum = std::max(maximum, scores[p]);
      }
      float sum = 0.0f;
      for (int p = 0; p < span.count; p++) {
        scores[p] = std::exp(scores[p] - maximum);
        sum += scores[p];
      }
      if (lse) lse[task] = maximum + std::log(sum);
      float* output = out + size_t(t) * Q + size_t(h) * D;
      std::fill(output, output + D, 0.0f);
      for (int p = 0; p < span.count; p++)
        k.axpy(scores[p] / sum, span.values + size_t(p) * KV + size_t(kv_head) * D, output, D);
    }
  });
}

void attention_backward(ThreadPool& pool, const Kernels& k, const float* q, const float* keys, const float* values,
                        const float* lse, const float* d_out, int T, const std::vector<int>& first, int Hq, int Hkv,
                        int D, float* dq, float* dk, float* dv) {
  const int Q = Hq * D, KV = Hkv * D, group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(float(D));
  int longest = 0;
  for (int t = 0; t < T; t++) longest = std::max(longest, t - first[t] + 1);
  // The packed sequences' row ranges: rows attend only within their own, so each (key-value head,
  // sequence) pair is a task of its own, and each dk and dv row still adds its terms in one order.
  std::vector<std::pair<int, int>> sequences;
  for (int t = 0; t < T; t++)
    if (t == 0 || first[t] != first[t - 1]) sequences.emplace_back(t, t + 1);
    else sequences.back().second = t + 1;
  const size_t count = sequences.size();
  const bool row_kernel = k.attention_rows_backward && k.attention_head_dim(D);
  pool.parallel_for(size_t(Hkv) * count, [&](size_t begin, size_t end, size_t) {
    std::vector<float> probabilities(static_cast<size_t>(longest)), dp(probabilities.size());
    for (size_t task = begin; task < end; task++) {
      const size_t kv = task / count;
      const auto [from, to] = sequences[task % count];
      if (row_kernel) {
        probabilities.resize(8 * (size_t(longest) + 4));
        const size_t start = size_t(first[from]) * KV + kv * D;
        for (int h = int(kv) * group; h < int(kv + 1) * group; h++) {
          const size_t at = size_t(from) * Q + size_t(h) * D;
          k.attention_rows_backward(q + at, d_out + at, Q, keys + start, values + start, KV, from - first[from] + 1,
                                    to - from, D, scale, lse + size_t(from) * Hq + h, Hq, dq + at, dk + start,
                                    dv + start, probabilities.data());
        }
        continue;
      }
      for (int h = int(kv) * group; h < int(kv + 1) * group; h++)
        for (int t = from; t < to; t++) {
          const int start = first[t];
          const float* query = q + size_t(t) * Q + size_t(h) * D;
          const float* d_output = d_out + size_t(t) * Q + size_t(h) * D;
          const float row_lse = lse[size_t(t) * Hq + h];
          float weighted = 0.0f;
          for (int p = start; p <= t; p++) {
            const float* key = keys + size_t(p) * KV + kv * D;
            const float* value = values + size_t(p) * KV + kv * D;
            probabilities[p - start] = std::exp(k.dot(query, key, D) * scale - row_lse);
            dp[p - start] = k.dot(d_output, value, D);
            weighted += probabilities[p - start] * dp[p - start];
          }
          float* d_query = dq + size_t(t) * Q + size_t(h) * D;
          for (int p = start; p <= t; p++) {
            const float probability = probabilities[p - start];
            const float ds = probability * (dp[p - start] - weighted) * scale;
            k.axpy(ds, keys + size_t(p) * KV + kv * D, d_query, D);
            k.axpy(ds, query, dk + size_t(p) * KV + kv * D, D);
            k.axpy(probability, d_output, dv + size_t(p) * KV + kv * D, D);
          }
        }
    }
  });
}

// ---- Cross-entropy ------------------------------------------------------------------------------

CrossEntropy cross_entropy(const Kernels& k, float* logits, int V, int32_t label, float gradient_scale) {
  const float* best = std::max_element(logits, logits + V);
  const float maximum = *best;
  double sum = 0.0;
  if (k.exp_sum) {
    sum = k.exp_sum(logits, size_t(V), maximum);
  } else {
    for (int v = 0; v < V; v++) sum += std::exp(double(logits[v] - maximum));
  }
  const double lse = double(maximum) + std::log(sum);
  CrossEntropy result;
  result.loss = lse - double(logits[label]);
  result.correct = best - logits == label;
  if (gradient_scale > 0.0f) {
    if (k.exp_scaled) {
      k.exp_scaled(logits, size_t(V), float(lse), gradient_scale, logits);
    } else {
      for (int v = 0; v < V; v++) logits[v] = float(std::exp(double(logits[v]) - lse)) * gradient_scale;
    }
    logits[label] -= gradient_scale;
  }
  return result;
}

}  // namespace tunekit::ops
