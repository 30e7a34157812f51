#define _GNU_SOURCE
#include "CRuntimeLibrary.h"

#include <dlfcn.h>
#include <stdio.h>

const char *vgpu_runtime_library_open(const char *soname, const char *const *names, void **functions, int count,
                                      const char *missing_hint, char *problem, size_t size) {
    void *library = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        const char *reason = dlerror();
        snprintf(problem, size, "%s", reason ? reason : soname);
        return problem;
    }
    for (int index = 0; index < count; index++) {
        functions[index] = dlsym(library, names[index]);
        if (functions[index] == NULL) {
            snprintf(problem, size, "%s has no function %s%s", soname, names[index], missing_hint);
            return problem;
        }
    }
    return NULL;
}
