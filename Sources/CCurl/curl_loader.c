/*
 * Forwarders for the libcurl functions the project calls, resolved from libcurl.so.4 opened at
 * run time. Hidden visibility: they serve this executable's Swift code only.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "CRuntimeLibrary.h"

#pragma GCC visibility push(hidden)
#include "CCurl.h"

#ifdef __APPLE__
#define VGPU_CURL_SONAME "libcurl.4.dylib"
#else
#define VGPU_CURL_SONAME "libcurl.so.4"
#endif

#define VGPU_CURL_FUNCTIONS(X)                                                                     \
    X(curl_easy_cleanup)                                                                           \
    X(curl_easy_getinfo)                                                                           \
    X(curl_easy_init)                                                                              \
    X(curl_easy_perform)                                                                           \
    X(curl_easy_setopt)                                                                            \
    X(curl_easy_strerror)                                                                          \
    X(curl_global_init)                                                                            \
    X(curl_slist_append)                                                                           \
    X(curl_slist_free_all)

#define VGPU_SLOT(name) vgpu_slot_##name,
enum { VGPU_CURL_FUNCTIONS(VGPU_SLOT) vgpu_curl_function_count };
#define VGPU_NAME(name) #name,
static const char *const vgpu_curl_names[] = {VGPU_CURL_FUNCTIONS(VGPU_NAME)};

static void *vgpu_curl_functions[vgpu_curl_function_count];
static const char *vgpu_curl_problem;
static char vgpu_curl_problem_text[1024];
static pthread_once_t vgpu_curl_once = PTHREAD_ONCE_INIT;

static void vgpu_curl_open(void) {
    vgpu_curl_problem = vgpu_runtime_library_open(VGPU_CURL_SONAME, vgpu_curl_names, vgpu_curl_functions,
                                                  vgpu_curl_function_count, "", vgpu_curl_problem_text,
                                                  sizeof vgpu_curl_problem_text);
}

const char *vgpu_curl_load(void) {
    pthread_once(&vgpu_curl_once, vgpu_curl_open);
    return vgpu_curl_problem;
}

static void *vgpu_curl_function(int slot) {
    const char *problem = vgpu_curl_load();
    if (problem != NULL) {
        fprintf(stderr, "vgpu-migrate: libcurl is not usable: %s\n", problem);
        abort();
    }
    return vgpu_curl_functions[slot];
}

/* The function in slot `name`, typed as libcurl declares it (the variadic ones too). */
#define VGPU_CALL(name) ((__typeof__(&name))vgpu_curl_function(vgpu_slot_##name))

void curl_easy_cleanup(CURL *curl) { VGPU_CALL(curl_easy_cleanup)(curl); }

CURL *curl_easy_init(void) { return VGPU_CALL(curl_easy_init)(); }

CURLcode curl_easy_perform(CURL *curl) { return VGPU_CALL(curl_easy_perform)(curl); }

const char *curl_easy_strerror(CURLcode code) { return VGPU_CALL(curl_easy_strerror)(code); }

CURLcode curl_global_init(long flags) { return VGPU_CALL(curl_global_init)(flags); }

struct curl_slist *curl_slist_append(struct curl_slist *list, const char *text) {
    return VGPU_CALL(curl_slist_append)(list, text);
}

void curl_slist_free_all(struct curl_slist *list) { VGPU_CALL(curl_slist_free_all)(list); }

CURLcode vgpu_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return VGPU_CALL(curl_easy_setopt)(handle, option, value);
}

CURLcode vgpu_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return VGPU_CALL(curl_easy_setopt)(handle, option, value);
}

CURLcode vgpu_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return VGPU_CALL(curl_easy_setopt)(handle, option, value);
}

CURLcode vgpu_curl_setopt_write_function(CURL *handle, vgpu_curl_write_callback callback) {
    return VGPU_CALL(curl_easy_setopt)(handle, CURLOPT_WRITEFUNCTION, callback);
}

CURLcode vgpu_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return VGPU_CALL(curl_easy_getinfo)(handle, info, value);
}

#pragma GCC visibility pop
