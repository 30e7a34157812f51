#ifndef VGPU_MIGRATE_CRUNTIME_LIBRARY_H
#define VGPU_MIGRATE_CRUNTIME_LIBRARY_H
#include <stddef.h>

/*
 * Opens the shared library `soname` (its own symbol scope) and looks up `count` functions by
 * `names` into `functions`. Returns NULL when every function was found, else why not, written
 * into `problem` (`size` bytes): the dynamic loader's message, or the first function missing
 * followed by `missing_hint`.
 */
const char *vgpu_runtime_library_open(const char *soname, const char *const *names, void **functions, int count,
                                      const char *missing_hint, char *problem, size_t size);
#endif
