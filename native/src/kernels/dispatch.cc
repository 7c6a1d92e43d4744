// Run-time choice of the kernel table from the CPU's features.
#include <stdexcept>

#ifdef TUNEKIT_X86_SIMD
#include <cpuid.h>
#endif

#include "kernels/kernels.h"
#include "util/error.h"

namespace tunekit {

#ifdef TUNEKIT_X86_SIMD
namespace {

// XCR0: which register states the OS saves on a context switch (an instruction set is usable only
// when the CPU has it and the OS saves its registers).
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

}  // namespace
#endif

CpuFeatures cpu_features() {
  CpuFeatures features;
#ifdef TUNEKIT_X86_SIMD
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return features;
  const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), f16c = ecx & (1u << 29);
  if (!osxsave || !avx) return features;
  const uint64_t xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;     // SSE and AVX registers
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;   // and the AVX-512 opmask and upper registers
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return features;
  const bool avx2 = ebx & (1u << 5), avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  features.avx2 = ymm_state && avx2 && fma && f16c;
  features.avx512 = features.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl;
  if (features.avx512 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) features.avx512_bf16 = eax & (1u << 5);
#endif
  return features;
}

const Kernels& select_kernels(const std::string& path) {
  const CpuFeatures features = cpu_features();
  if (path == "scalar") return scalar_kernels();
#ifdef TUNEKIT_X86_SIMD
  if (path == "avx512") {
    if (!features.avx512) throw Error(ErrorCode::UnsupportedCpu, "TUNEKIT_CPU=avx512: this CPU lacks AVX-512 (F/BW/VL/DQ)");
    return avx512_kernels(features.avx512_bf16);
  }
  if (path == "avx2") {
    if (!features.avx2) throw Error(ErrorCode::UnsupportedCpu, "TUNEKIT_CPU=avx2: this CPU lacks AVX2/FMA/F16C");
    return avx2_kernels();
  }
  if (path.empty()) {
    if (features.avx512) return avx512_kernels(features.avx512_bf16);
    if (features.avx2) return avx2_kernels();
    return scalar_kernels();
  }
#else
  if (path.empty()) return scalar_kernels();
  if (path == "avx2" || path == "avx512")
    throw Error(ErrorCode::UnsupportedCpu, "TUNEKIT_CPU=" + path + ": this build has only the scalar kernels");
#endif
  throw Error(ErrorCode::InvalidArgument, "TUNEKIT_CPU must be scalar, avx2 or avx512, not \"" + path + "\"");
}

}  // namespace tunekit
