#include "model/batch.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

namespace tunekit {

namespace {

// The chosen token's log-probability under the raw logits (before temperature, top-k and top-p, as
// vLLM reports them by default) and the `top` most likely tokens, best first (ties: lower id first).
void log_probabilities(const float* logits, int vocab, int32_t chosen, int top, StepEvent& event) {
  float maximum = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; i++) maximum = std::max(maximum, logits[i]);
  double sum = 0.0;
  for (int i = 0; i < vocab; i++) sum += std::exp(double(logits[i]) - double(maximum));
  const double lse = double(maximum) + std::log(sum);
  event.reported_logprob = true;
  event.logprob = float(double(logits[chosen]) - lse);
  if (top <= 0) return;
  std::vector<int32_t> best;  // sorted, at most `top`
  const auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  for (int32_t i = 0; i < vocab; i++) {
    if (int(best.size()) == top && !better(i, best.back())) continue;
    best.insert(std::upper_bound(best.begin(), best.end(), i, better), i);
    if (int(best.size()) > top) best.pop_back();
  }
  for (int32_t id : best) event.top.emplace_back(id, float(double(logits[id]) - lse));
}

}  // namespace

uint64_t DecodeBatch::add(std::vector<int32_t> prompt, const SamplingOptions& options,
                          std::shared_ptr<const LoraSet> lora) {
  const ModelConfig& config = model_.config();
  model_.check_tokens(prompt);
  if (prompt.empty()) throw Error(ErrorCode::InvalidArgument, "generate needs at least one prompt token");
  if (int(prompt.size()) > config.max_positions)
    throw Error(ErrorCode::ContextLengthExceeded, std::to_string(prompt.size()) + " prompt tokens exceed max_position_embeddings (" +
                                                      std::to_string(config.max_positions) + ")");
  if (lora && int(lora->layers.size()) != config.num_layers)
    throw Error(ErrorCode::ShapeMismatch, "LoRA set has the wrong layer count");
  auto sequence = std::make_unique<Sequence>(options);
  sequence->capacity = std::min<int>(config.max_positions, int(prompt.size()) + std::max(0, options.max_tokens));
  sequence->prompt = std::move(prompt);
  sequence->lora = std::move(lora);
  std::lock_guard<std::mutex> lock(mutex_);
  sequence->id = next_id_++;
  const uint64_t id = sequence->id;
  pending_.push_back(std::move(sequence));
  count_++;
  return id;
}

void DecodeBatch::end(uint64_t id, FinishReason reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  ended_.emplace_back(id, reason);
}

size_t DecodeBatch::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return count_;
}

std::vector<StepEvent> DecodeBatch::step() {
  if (stepping_.exchange(true)) throw Error(ErrorCode::InvalidArgument, "a step of this batch is already running");
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag.store(false); }
  } done{stepping_};
  std::vector<std::pair<uint64_t, FinishReason>> ended;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::unique_ptr<Sequence>& sequence : pending_) running_.push_back(std::move(sequence));
    pending_.clear();
    ended.swap(ended_);
  }
  std::vector<StepEvent> events;
  const auto finish = [&](Sequence& sequence, FinishReason reason, StepEvent event) {
    sequence.finished = true;
    event.id = sequence.id;
    event.finished = true;
    event.finish = reason;
    events.push_back(std::move(event));
  };
  for (const auto& [id, reason] : ended)
    for (std::unique_ptr<Sequence>& sequence : running_)
      if (sequence->id == id && !sequence->finished) finish(*sequence, reason, {});
  for (std::unique_ptr<Sequence>& sequence : running_)
    if (!sequence->finished && sequence->options.max_tokens <= 0) finish(*sequence, FinishReason::Length, {});

  try {
    // The rows: a joining sequence's prompt, else its newest token; sequences on the same adapters
    // side by side, so that each adapter meets its rows in one product.
    std::vector<Sequence*> order;
    for (std::unique_ptr<Sequence>& sequence : running_)
      if (!sequence->finished) order.push_back(sequence.get());
    std::stable_sort(order.begin(), order.end(), [](const Sequence* a, const Sequence* b) {
      return std::less<const LoraSet*>()(a->lora.get(), b->lora.get());
    });
    if (!order.empty()) {
      const int H = model_.config().hidden_size, V = model_.config().vocab_size;
      std::vector<int32_t> tokens;
      std::vector<Segment> segments;
      std::vector<size_t> last_rows;
      for (Sequence* sequence : order) {
        if (sequence->cache.capacity == 0) sequence->cache = model_.new_cache(sequence->capacity);
        if (!sequence->prefilled) {
          tokens.insert(tokens.end(), sequence->prompt.begin(), sequence->prompt.end());
          segments.push_back(Segment{&sequence->cache, int(sequence->prompt.size()), sequence->lora.get()});
        } else {
          tokens.push_back(sequence->last);
          segments.push_back(Segment{&sequence->cache, 1, sequence->lora.get()});
        }
        last_rows.push_back(tokens.size() - 1);
      }
      std::vector<float> hidden(tokens.size() * size_t(H));
      model_.forward(tokens.data(), segments, hidden.data());
      for (Sequence* sequence : order)
        if (!sequence->prefilled) {
          sequence->prefilled = true;
          std::vector<int32_t>().swap(sequence->prompt);
        }
      // The head over each sequence's newest state, then one token for each.
      std::vector<float> states(order.size() * size_t(H)), logits(order.size() * size_t(V));
      for (size_t r = 0; r < order.size(); r++)
        std::copy_n(hidden.begin() + last_rows[r] * size_t(H), H, states.begin() + r * size_t(H));
      model_.head(states.data(), int(order.size()), logits.data());
      for (size_t r = 0; r < order.size(); r++) {
        Sequence& sequence = *order[r];
        const SamplingOptions& options = sequence.options;
        const float* row = logits.data() + r * size_t(V);
        StepEvent event;
        event.has_token = true;
        event.token = sequence.sampler.sample(row, V);
        if (options.top_logprobs >= 0) log_probabilities(row, V, event.token, options.top_logprobs, event);
        if (options.collect_logits) event.logits.assign(row, row + V);
        sequence.generated++;
        const bool stop_token = std::find(options.stop_tokens.begin(), options.stop_tokens.end(), event.token) !=
                                options.stop_tokens.end();
        if (stop_token) {
          finish(sequence, FinishReason::Stop, std::move(event));
        } else if (sequence.generated >= options.max_tokens || sequence.cache.length >= sequence.cache.capacity) {
          finish(sequence, FinishReason::Length, std::move(event));  // done, or the context is full
        } else {
          sequence.last = event.token;
          event.id = sequence.id;
          events.push_back(std::move(event));
        }
      }
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    running_.clear();
    pending_.clear();
    count_ = 0;
    throw;
  }
  const auto is_finished = [](const std::unique_ptr<Sequence>& sequence) { return sequence->finished; };
  const size_t finished = size_t(std::count_if(running_.begin(), running_.end(), is_finished));
  running_.erase(std::remove_if(running_.begin(), running_.end(), is_finished), running_.end());
  std::lock_guard<std::mutex> lock(mutex_);
  count_ -= finished;
  return events;
}

}  // namespace tunekit
