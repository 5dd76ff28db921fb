#include "cuda/shared_library.h"

namespace itkit::cuda {

Result<void*> OpenSharedLibrary(const std::string& soname, const std::string& fallback_dir, const char* what) {
  void* lib = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib != nullptr) return lib;
  // dlerror() clears itself: read it once.
  const char* error = ::dlerror();
  const std::string first_error = error != nullptr ? error : "not found";
  if (!fallback_dir.empty()) {
    lib = ::dlopen((fallback_dir + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) return lib;
  }
  return Unavailable(what, " could not be loaded (", soname, ": ", first_error,
                     "); add its folder to LD_LIBRARY_PATH");
}

}  // namespace itkit::cuda
