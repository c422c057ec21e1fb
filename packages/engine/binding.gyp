{
  # The addon links against libtorch. Debian's libtorch-dev (1.13) is the default; LIBTORCH=<dir>
  # (a libtorch or torch wheel directory with include/ and lib/) overrides it, which is how a CUDA
  # libtorch 2.x gets used. scripts/build-addon.mjs computes the variables below.
  "variables": {
    "torch_includes%": "/usr/include /usr/include/torch/csrc/api/include",
    "torch_libdir%": "",
    "torch_cuda%": "no",
    "torch_cxx11_abi%": "",
  },
  "targets": [
    {
      "target_name": "mpo_engine",
      "sources": [
        "csrc/addon.cpp",
        "csrc/model.cpp",
        "csrc/kernels.cpp",
        "csrc/attention.cpp",
        "csrc/blas.cpp",
        "csrc/scoring.cpp",
        "csrc/backward.cpp",
        "csrc/optimizer.cpp",
        "csrc/generation.cpp",
        "csrc/tensor_io.cpp",
        "csrc/lora.cpp",
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "<@(torch_includes)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fopenmp", "-fno-trapping-math", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "ldflags": ["-fopenmp"],
      "conditions": [
        ["torch_libdir!=''", {
          "ldflags": ["-L<(torch_libdir)", "-Wl,-rpath,<(torch_libdir)"],
        }],
        ["torch_cxx11_abi!=''", {
          "defines": ["_GLIBCXX_USE_CXX11_ABI=<(torch_cxx11_abi)"],
        }],
        ["torch_cuda=='yes'", {
          # --no-as-needed: nothing references libtorch_cuda directly, but loading it is what registers
          # the CUDA kernels.
          "libraries": ["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda", "-Wl,--as-needed"],
          "defines": ["MPO_WITH_CUDA=1"],
        }],
      ],
      "libraries": ["-ltorch", "-ltorch_cpu", "-lc10", "-ldl"],
    }
  ]
}
