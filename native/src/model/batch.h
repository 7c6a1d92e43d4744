// Continuous batching: sequences join and leave a running decode between steps. Each step runs one
// new token of every running sequence (a sequence that has just joined: its whole prompt) through
// the decoder as one batch, every row through its own sequence's adapters, then samples each
// sequence's next token with that sequence's own sampler. The kernels sum every element in an order
// fixed by its row and column alone, so a sequence gets the tokens it would get decoded alone.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "model/llama.h"

namespace tunekit {

// What one step did to one sequence: a new token (with its log-probabilities and logits when they
// were asked for), and whether the sequence ended (a stop or cancel request ends it with no token).
struct StepEvent {
  uint64_t id = 0;
  bool has_token = false;
  int32_t token = 0;
  bool reported_logprob = false;                 // top_logprobs ≥ 0
  float logprob = 0.0f;                          // log-softmax of the raw logits
  std::vector<std::pair<int32_t, float>> top;    // the top_logprobs most likely tokens, best first
  std::vector<float> logits;                     // the step's logits (collect_logits)
  bool finished = false;
  FinishReason finish = FinishReason::Length;
};

class DecodeBatch {
 public:
  // The model must outlive the batch.
  explicit DecodeBatch(const LlamaModel& model) : model_(model) {}

  // Queues a sequence to join at the next step and returns its id. Checks the prompt (token ids,
  // not empty, within max_position_embeddings). `lora`: its adapters (null: the base model);
  // options.adapter is not read. Safe to call while a step runs.
  uint64_t add(std::vector<int32_t> prompt, const SamplingOptions& options, std::shared_ptr<const LoraSet> lora);
  // Ends a sequence before its next token, as a stop string (stop) or a cancellation (cancel) does;
  // the next step reports it. Unknown or finished ids are ignored. Safe to call while a step runs.
  void stop(uint64_t id) { end(id, FinishReason::Stop); }
  void cancel(uint64_t id) { end(id, FinishReason::Abort); }
  // One step; one at a time. If it throws, every sequence is dropped.
  std::vector<StepEvent> step();
  // Sequences added and not yet reported finished.
  size_t size() const;

 private:
  struct Sequence {
    uint64_t id = 0;
    std::vector<int32_t> prompt;  // cleared once prefilled
    SamplingOptions options;
    std::shared_ptr<const LoraSet> lora;
    Sampler sampler;
    int capacity = 0;
    KVCache cache;  // allocated when the sequence joins
    bool prefilled = false, finished = false;
    int32_t last = 0;  // the newest token, the next step's input
    int generated = 0;
    Sequence(const SamplingOptions& sampling) : options(sampling), sampler(sampling) {}
  };
  void end(uint64_t id, FinishReason reason);

  const LlamaModel& model_;
  mutable std::mutex mutex_;  // guards pending_, ended_, next_id_ and count_
  std::vector<std::unique_ptr<Sequence>> pending_;
  std::vector<std::pair<uint64_t, FinishReason>> ended_;
  uint64_t next_id_ = 1;
  size_t count_ = 0;
  std::vector<std::unique_ptr<Sequence>> running_;  // step() only
  std::atomic<bool> stepping_{false};
};

}  // namespace tunekit
