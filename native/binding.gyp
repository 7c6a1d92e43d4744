{
  "targets": [
    {
      "target_name": "tunekit",
      "sources": [
        "src/addon/addon.cc",
        "src/io/mapped_file.cc",
        "src/kernels/dispatch.cc",
        "src/kernels/gemm.cc",
        "src/kernels/scalar.cc",
        "src/kernels/nf4.cc",
        "src/model/batch.cc",
        "src/model/decoder.cc",
        "src/model/llama.cc",
        "src/model/ops.cc",
        "src/model/sampler.cc",
        "src/model/train.cc",
        "src/util/thread_pool.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "src"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } },
      "conditions": [
        # The SIMD kernels compile only where the compiler can target x86-64 extensions; each file
        # enables its instruction set with a pragma, so the rest of the binary stays baseline x86-64.
        ["target_arch=='x64' and OS!='win'", {
          "sources": ["src/kernels/avx2.cc", "src/kernels/avx512.cc"],
          "defines": ["TUNEKIT_X86_SIMD=1"]
        }]
      ]
    }
  ]
}
