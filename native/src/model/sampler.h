// Picks the next token from logits the way transformers' generate does with do_sample: temperature,
// then top-k, then top-p (nucleus), then a draw; temperature 0 is greedy (the first largest logit).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace tunekit {

struct SamplingOptions;

// xoshiro256** seeded through splitmix64: the same seed gives the same draws on every platform.
class Random {
 public:
  explicit Random(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits
  // The generator's whole state, to save and restore (exact resumption of training).
  std::array<uint64_t, 4> state() const { return {state_[0], state_[1], state_[2], state_[3]}; }
  void set_state(const std::array<uint64_t, 4>& state) {
    for (int i = 0; i < 4; i++) state_[i] = state[i];
  }

 private:
  uint64_t state_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  int32_t sample(const float* logits, int vocab);

 private:
  float temperature_;
  int top_k_;
  float top_p_;
  Random random_;
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace tunekit
