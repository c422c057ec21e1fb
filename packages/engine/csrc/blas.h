// Symbols of the BLAS that libtorch runs on (OpenBLAS with Debian's libtorch), looked up at run time
// so that the addon links and loads the same way when there is none (e.g. a torch wheel with MKL
// linked in privately).
#pragma once

namespace mpo {

// Address of `name` in the process or in the addon's dependency tree (Node loads addons with
// RTLD_LOCAL, so their libraries are not in the global scope); nullptr when absent.
void* findSymbol(const char* name);

}  // namespace mpo
