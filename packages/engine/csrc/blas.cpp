#include "blas.h"

#include <dlfcn.h>

namespace mpo {

void* findSymbol(const char* name) {
  if (void* p = dlsym(RTLD_DEFAULT, name)) return p;
  // dlsym on our own handle searches the addon and every library it depends on.
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&findSymbol), &info) == 0 || !info.dli_fname) return nullptr;
  void* self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (!self) return nullptr;
  void* p = dlsym(self, name);
  dlclose(self);  // drops the reference RTLD_NOLOAD added
  return p;
}

}  // namespace mpo
