#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "model/llama.h"

namespace tunekit {

Random::Random(uint64_t seed) {
  for (uint64_t& word : state_) {  // splitmix64
    seed += 0x9e3779b97f4a7c15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    word = z ^ (z >> 31);
  }
}

uint64_t Random::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Random::uniform() { return double(next() >> 11) * 0x1.0p-53; }

Sampler::Sampler(const SamplingOptions& options)
    : temperature_(options.temperature), top_k_(options.top_k), top_p_(options.top_p), random_(options.seed) {}

int32_t Sampler::sample(const float* logits, int vocab) {
  if (temperature_ <= 0.0f) return int32_t(std::max_element(logits, logits + vocab) - logits);
  candidates_.resize(vocab);
  for (int i = 0; i < vocab; i++) candidates_[i] = {logits[i] / temperature_, i};
  // Largest first; ties keep the lower id first so the order is the same everywhere.
  auto larger = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = candidates_.size();
  if (top_k_ > 0 && size_t(top_k_) < keep) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + top_k_, candidates_.end(), larger);
    keep = size_t(top_k_);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), larger);
  }
  // Softmax over the kept candidates, in double.
  const float maximum = candidates_[0].first;
  std::vector<double> probabilities(keep);
  double sum = 0.0;
  for (size_t i = 0; i < keep; i++) sum += probabilities[i] = std::exp(double(candidates_[i].first - maximum));
  for (double& p : probabilities) p /= sum;
  // Nucleus: the fewest top candidates whose probability reaches top_p (at least one).
  if (top_p_ < 1.0f) {
    double cumulative = 0.0;
    size_t nucleus = 0;
    while (nucleus < keep) {
      cumulative += probabilities[nucleus++];
      if (cumulative >= double(top_p_)) break;
    }
    keep = nucleus;
    sum = cumulative;
  } else {
    sum = 1.0;
  }
  const double draw = random_.uniform() * sum;
  double cumulative = 0.0;
  for (size_t i = 0; i < keep; i++) {
    cumulative += probabilities[i];
    if (draw < cumulative) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace tunekit
