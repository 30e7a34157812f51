#ifndef VGPU_MIGRATE_CCURL_H
#define VGPU_MIGRATE_CCURL_H
/*
 * libcurl's API as Swift sees it. The functions are not linked: curl_loader.c opens libcurl.so.4
 * the first time an agent is called (vgpu_curl_load), so commands that never talk to an agent
 * start without loading libcurl and its TLS libraries.
 */
#include <curl/curl.h>

/*
 * Opens libcurl and looks up every function the project calls; the work is done once, from any
 * thread. Returns NULL when libcurl is usable, else why not (valid for the life of the process).
 */
const char *vgpu_curl_load(void);

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call: typed wrappers. */
CURLcode vgpu_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode vgpu_curl_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode vgpu_curl_setopt_pointer(CURL *handle, CURLoption option, void *value);
typedef size_t (*vgpu_curl_write_callback)(char *data, size_t size, size_t count, void *context);
CURLcode vgpu_curl_setopt_write_function(CURL *handle, vgpu_curl_write_callback callback);
CURLcode vgpu_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);
#endif
