// Run-time choice of the kernel table from the CPU's features.
#include <stdexcept>

#include "kernels/kernels.h"

namespace tunekit {

CpuFeatures cpu_features() {
  CpuFeatures features;
#if defined(TUNEKIT_X86_SIMD) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  features.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("f16c");
  features.avx512 = features.avx2 && __builtin_cpu_supports("avx512f") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512dq");
#endif
  return features;
}

const Kernels& select_kernels(const std::string& path) {
  const CpuFeatures features = cpu_features();
  if (path == "scalar") return scalar_kernels();
#ifdef TUNEKIT_X86_SIMD
  if (path == "avx512") {
    if (!features.avx512) throw std::runtime_error("TUNEKIT_CPU=avx512: this CPU lacks AVX-512 (F/BW/VL/DQ)");
    return avx512_kernels();
  }
  if (path == "avx2") {
    if (!features.avx2) throw std::runtime_error("TUNEKIT_CPU=avx2: this CPU lacks AVX2/FMA/F16C");
    return avx2_kernels();
  }
  if (path.empty()) {
    if (features.avx512) return avx512_kernels();
    if (features.avx2) return avx2_kernels();
    return scalar_kernels();
  }
#else
  if (path.empty()) return scalar_kernels();
  if (path == "avx2" || path == "avx512")
    throw std::runtime_error("TUNEKIT_CPU=" + path + ": this build has only the scalar kernels");
#endif
  throw std::runtime_error("TUNEKIT_CPU must be scalar, avx2 or avx512, not \"" + path + "\"");
}

}  // namespace tunekit
