// This CPU's arithmetic limit, the figure every engine benchmark prints beside its own: independent
// chains of AVX-512 fused multiply-adds (fp32) and of AVX-512 BF16 dot products (vdpbf16ps) kept in
// registers, so that nothing but the arithmetic units is measured, on 1 thread and on N at once.
// Built and run by bench/peak.mjs; prints one JSON line.
//
//   g++ -O2 -std=c++17 -pthread bench/peak.cc -o peak && ./peak [threads] [seconds]
#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 16;  // enough independent chains to cover latency on both FMA pipes
constexpr long kRound = 1 << 16;

// fp32: acc = acc · a + b, 16 lanes × 2 flops per instruction.
__attribute__((target("avx512f,fma"))) double fp32_round(float seed) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; j++) acc[j] = _mm512_set1_ps(seed + float(j));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long i = 0; i < kRound; i++)
    for (int j = 0; j < kChains; j++) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; j++) sum = _mm512_add_ps(sum, acc[j]);
  return double(_mm512_reduce_add_ps(sum));
}

// bf16: acc += a[2i] · b[2i] + a[2i + 1] · b[2i + 1], 16 lanes × 2 products × 2 flops per instruction.
__attribute__((target("avx512f,avx512bf16"))) double bf16_round(float seed) {
  __m512 acc[kChains];
  for (int j = 0; j < kChains; j++) acc[j] = _mm512_set1_ps(seed + float(j));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (long i = 0; i < kRound; i++)
    for (int j = 0; j < kChains; j++) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
  __m512 sum = acc[0];
  for (int j = 1; j < kChains; j++) sum = _mm512_add_ps(sum, acc[j]);
  return double(_mm512_reduce_add_ps(sum));
}

// GFLOP/s of `threads` threads running `round` together for about `seconds` (each counts its own rounds).
double measure(double (*round)(float), double flops_per_round, int threads, double seconds) {
  std::atomic<bool> go{false}, stop{false};
  std::vector<long> rounds(threads, 0);
  std::vector<double> sink(threads, 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; t++)
    workers.emplace_back([&, t] {
      while (!go.load()) {
      }
      while (!stop.load()) {
        sink[t] += round(float(t));
        rounds[t]++;
      }
    });
  const auto start = std::chrono::steady_clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& worker : workers) worker.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  long total = 0;
  for (long count : rounds) total += count;
  if (sink[0] == 12345.0) std::puts("");  // keep the sums alive
  return double(total) * flops_per_round / elapsed / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : int(std::thread::hardware_concurrency());
  const double seconds = argc > 2 ? std::atof(argv[2]) : 1.0;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("{\"error\":\"no AVX-512 on this CPU\"}\n");
    return 0;
  }
  const double fp32_flops = double(kRound) * kChains * 32;
  const double bf16_flops = double(kRound) * kChains * 64;
  const double fp32_one = measure(fp32_round, fp32_flops, 1, seconds);
  const double fp32_all = measure(fp32_round, fp32_flops, threads, seconds);
  const bool bf16 = __builtin_cpu_supports("avx512bf16");
  const double bf16_one = bf16 ? measure(bf16_round, bf16_flops, 1, seconds) : 0;
  const double bf16_all = bf16 ? measure(bf16_round, bf16_flops, threads, seconds) : 0;
  std::printf(
      "{\"threads\":%d,\"fp32\":{\"one\":%.1f,\"all\":%.1f},\"bf16\":%s}\n", threads, fp32_one, fp32_all,
      bf16 ? (std::string("{\"one\":") + std::to_string(bf16_one) + ",\"all\":" + std::to_string(bf16_all) + "}").c_str()
           : "null");
  return 0;
}
