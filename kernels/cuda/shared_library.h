// Opening the NVIDIA libraries at run time (cublas_api.h, cudnn_api.h say why):
// dlopen with a fallback folder, and symbol lookup that collects what is missing.
#pragma once

#include <dlfcn.h>

#include <string>

#include "itkit/status.h"

namespace itkit::cuda {

// Opens `soname` from the loader path, else from `fallback_dir` (the folder found
// at build time; empty: none), RTLD_LOCAL so its symbols stay out of the global
// namespace. Unavailable names `what`, the soname and the loader's first error.
Result<void*> OpenSharedLibrary(const std::string& soname, const std::string& fallback_dir, const char* what);

// *fn = the symbol `name` of `lib`; when absent, appends the name to *missing.
template <typename Fn>
void ResolveSymbol(void* lib, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(::dlsym(lib, name));
  if (*fn == nullptr) *missing += StrCat(missing->empty() ? "" : ", ", name);
}

}  // namespace itkit::cuda
