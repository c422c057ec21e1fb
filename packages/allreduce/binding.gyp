{
  # mpo_allreduce.node: the shared-memory group (and, where NCCL and the CUDA runtime are found,
  # the NCCL communicator). mpo-rank-exec: the launcher's exec wrapper (affinity + parent-death
  # signal set before exec). scripts/build-addon.mjs drives node-gyp.
  "variables": {
    "with_nccl%": "<!(node scripts/find-nccl.mjs found)",
    "with_c10d%": "<!(node scripts/find-c10d.mjs found)",
  },
  "targets": [
    {
      "target_name": "mpo_allreduce",
      "sources": ["native/addon.cc", "native/shm_group.cc", "native/reduce_kernels.cc", "native/process_util.cc"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lrt", "-lpthread"],
      "conditions": [
        ["with_nccl=='yes'", {
          "sources": ["native/nccl_comm.cc"],
          "defines": ["MPO_WITH_NCCL=1"],
          "include_dirs": ["<!@(node scripts/find-nccl.mjs includes)"],
          "libraries": ["<!@(node scripts/find-nccl.mjs libs)"],
        }],
      ],
    },
    {
      # mpo_c10d.node: libtorch's c10d process groups (gloo between hosts; NCCL with a CUDA libtorch),
      # built only where scripts/find-c10d.mjs finds libtorch's c10d and gloo headers.
      "target_name": "mpo_c10d",
      "conditions": [
        ["with_c10d=='yes'", {
          "sources": ["native/c10d_group.cc"],
          "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "<!@(node scripts/find-c10d.mjs includes)"],
          "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "USE_C10D_GLOO", "<!@(node scripts/find-c10d.mjs defines)"],
          "cflags!": ["-fno-exceptions"],
          "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
          "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
          "libraries": ["<!@(node scripts/find-c10d.mjs libs)"],
        }, {
          "type": "none",
        }],
      ],
    },
    {
      "target_name": "mpo-rank-exec",
      "type": "executable",
      "sources": ["native/rank_exec.c"],
      "cflags": ["-O2", "-Wall"],
    },
  ],
}
