// Training: a forward pass through decoder.cc's blocks keeping what the backward pass needs, the loss,
// the backward pass block by block, gradient accumulation and AdamW. Only the LoRA matrices receive
// gradients; every base weight, norm and the embedding stay frozen. All in fp32.
//
// Shapes: T rows (the tokens of every packed sequence), H hidden.
#include <algorithm>
#include <cmath>

#include "model/llama.h"

namespace tunekit {

LlamaModel::Gradients LlamaModel::loss_and_gradients(const std::vector<int32_t>& tokens,
                                                     const std::vector<int32_t>& labels,
                                                     const std::vector<int>& lengths, bool checkpointing) const {
  return train_pass(tokens, labels, lengths, 0.0f, nullptr, true, checkpointing);
}

// One forward and backward pass. `mean`: gradients of the mean token loss, else of the sum. With
// dropout > 0, each adapter's input is dropped (PEFT: lora_B(lora_A(dropout(x)))) with `random`.
// The blocks are decoder.cc's, the same code inference runs; only the bookkeeping is here.
LlamaModel::Gradients LlamaModel::train_pass(const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                                             const std::vector<int>& lengths, float dropout, Random* random,
                                             bool mean, bool checkpointing) const {
  const ModelConfig& c = config_;
  check_batch(tokens, labels, lengths);
  const std::shared_ptr<const LoraSet> lora = this->lora();
  if (!lora) throw Error(ErrorCode::NoAdapter, "no LoRA adapter is attached");
  const int T = int(tokens.size()), H = c.hidden_size;
  const Kernels& k = *kernels_;

  // Packed sequences: each row's position in its sequence and the row where that sequence starts.
  BlockRows rows;
  rows.count = T;
  for (int length : lengths)
    for (int t = 0; t < length; t++) {
      rows.position.push_back(t);
      rows.first.push_back(int(rows.first.size()) - t);
    }
  rows.lora = {LoraRun{0, T, lora.get()}};
  const ops::RopeTable rope = ops::rope_table(rows.position, c.inv_freq, c.attention_scaling);
  const Dropout masks{dropout, random};
  const Dropout* dropping = dropout > 0.0f ? &masks : nullptr;

  // ---- Forward, keeping activations ----
  // With checkpointing only each block's input is kept, with its attention's output and log-sum-exps
  // (as much again as the input for SmolLM2, a ninth of the block's activations, and the one part
  // recomputing would spend most on beside the products) and its adapters' A x̃ and dropout masks (a
  // sixteenth of the input for r 16, and a 32nd of each projection's input); the rest is recomputed
  // from them in the backward pass.
  std::vector<BlockActivations> saved(checkpointing ? 1 : c.num_layers);
  struct Kept {
    std::vector<float> input, attention, lse;
    std::array<std::vector<float>, kProjections> lora_t;
    std::array<std::vector<uint8_t>, kProjections> lora_mask;
    void swap(BlockActivations& a) {
      attention.swap(a.attn);
      lse.swap(a.lse);
      for (int p = 0; p < kProjections; p++) {
        lora_t[p].swap(a.lora_t[p]);
        lora_mask[p].swap(a.lora_mask[p]);
      }
    }
  };
  std::vector<Kept> blocks(checkpointing ? c.num_layers : 0);
  std::vector<float> x(size_t(T) * H);
  embed(tokens.data(), T, x.data());
  for (int l = 0; l < c.num_layers; l++) {
    if (checkpointing) blocks[l].input = x;
    block_forward(l, x.data(), rows, rope, dropping, saved[checkpointing ? 0 : l], true);
    if (checkpointing) blocks[l].swap(saved[0]);
  }
  if (checkpointing) saved[0] = BlockActivations{};
  std::vector<float> final_normed(size_t(T) * H), final_rstd(T), norm(H);
  const float* final_weight = final_norm_.row(0, norm.data(), k);
  ops::rms_norm(k, x.data(), T, H, final_weight, c.rms_norm_eps, final_normed.data(), final_rstd.data());

  // ---- Loss: mean cross-entropy over the labelled next tokens of each sequence ----
  Gradients result;
  std::vector<int> predicting;  // rows whose next label counts
  std::vector<int32_t> targets;
  for (int t = 0; t < T; t++) {
    const bool last_of_sequence = t + 1 == T || rows.first[t + 1] != rows.first[t];
    if (!last_of_sequence && labels[t + 1] != -100) {
      predicting.push_back(t);
      targets.push_back(labels[t + 1]);
    }
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
  // dlogits = (softmax − onehot) / N, pushed straight through the frozen head into dh.
  std::vector<float> dh(size_t(T) * H, 0.0f);
  const float inverse = mean ? 1.0f / float(predicting.size()) : 1.0f;
  result.loss = head_loss(final_normed.data(), predicting, targets, inverse, dh.data()).total / double(predicting.size());

  // ---- Backward, block by block from the top ----
  std::vector<float> dx(size_t(T) * H, 0.0f);
  ops::rms_norm_backward(k, dh.data(), x.data(), T, H, final_weight, final_rstd.data(), dx.data());
  for (int l = c.num_layers - 1; l >= 0; l--) {
    if (checkpointing) {  // recompute this block's activations from what the forward pass kept
      blocks[l].swap(saved[0]);
      block_forward(l, blocks[l].input.data(), rows, rope, dropping, saved[0], true, true);
      blocks[l] = Kept{};  // its input, and what the block above left in saved[0]
    }
    block_backward(l, rows, rope, *lora, dropout, saved[checkpointing ? 0 : l], dx.data(), result.layers[l]);
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
      updated->transpose_b();
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
