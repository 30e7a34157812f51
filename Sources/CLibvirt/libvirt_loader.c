/*
 * Forwarders for the libvirt functions the project calls, resolved from libvirt.so.0 opened at
 * run time. The definitions have hidden visibility: they satisfy the Swift code's references
 * inside this executable only, and libvirt's own calls keep going to libvirt.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "CRuntimeLibrary.h"

#pragma GCC visibility push(hidden)
#include "CLibvirt.h"

#ifdef __APPLE__
#define VGPU_LIBVIRT_SONAME "libvirt.0.dylib"
#else
#define VGPU_LIBVIRT_SONAME "libvirt.so.0"
#endif

#define VGPU_LIBVIRT_FUNCTIONS(X)                                                                  \
    X(virConnectClose)                                                                             \
    X(virConnectCompareHypervisorCPU)                                                              \
    X(virConnectDomainEventDeregisterAny)                                                          \
    X(virConnectDomainEventRegisterAny)                                                            \
    X(virConnectGetCapabilities)                                                                   \
    X(virConnectGetHostname)                                                                       \
    X(virConnectGetLibVersion)                                                                     \
    X(virConnectGetVersion)                                                                        \
    X(virConnectListAllDomains)                                                                    \
    X(virConnectListAllNodeDevices)                                                                \
    X(virConnectOpen)                                                                              \
    X(virConnectOpenReadOnly)                                                                      \
    X(virDomainAbortJob)                                                                           \
    X(virDomainFree)                                                                               \
    X(virDomainGetJobStats)                                                                        \
    X(virDomainGetName)                                                                            \
    X(virDomainGetUUIDString)                                                                      \
    X(virDomainGetXMLDesc)                                                                         \
    X(virDomainIsActive)                                                                           \
    X(virDomainLookupByName)                                                                       \
    X(virDomainLookupByUUIDString)                                                                 \
    X(virDomainMigrateSetMaxDowntime)                                                              \
    X(virDomainMigrateToURI3)                                                                      \
    X(virEventRegisterDefaultImpl)                                                                 \
    X(virEventRunDefaultImpl)                                                                      \
    X(virGetLastError)                                                                             \
    X(virInitialize)                                                                               \
    X(virNodeDeviceFree)                                                                           \
    X(virNodeDeviceGetName)                                                                        \
    X(virNodeDeviceGetXMLDesc)                                                                     \
    X(virNodeGetFreeMemory)                                                                        \
    X(virNodeGetInfo)                                                                              \
    X(virNodeGetMemoryStats)                                                                       \
    X(virSetErrorFunc)                                                                             \
    X(virTypedParamsAddInt)                                                                        \
    X(virTypedParamsAddString)                                                                     \
    X(virTypedParamsAddULLong)                                                                     \
    X(virTypedParamsFree)                                                                          \
    X(virTypedParamsGetInt)                                                                        \
    X(virTypedParamsGetString)                                                                     \
    X(virTypedParamsGetULLong)

#define VGPU_SLOT(name) vgpu_slot_##name,
enum { VGPU_LIBVIRT_FUNCTIONS(VGPU_SLOT) vgpu_libvirt_function_count };
#define VGPU_NAME(name) #name,
static const char *const vgpu_libvirt_names[] = {VGPU_LIBVIRT_FUNCTIONS(VGPU_NAME)};

static void *vgpu_libvirt_functions[vgpu_libvirt_function_count];
static const char *vgpu_libvirt_problem;
static char vgpu_libvirt_problem_text[1024];
static pthread_once_t vgpu_libvirt_once = PTHREAD_ONCE_INIT;

static void vgpu_libvirt_open(void) {
    vgpu_libvirt_problem = vgpu_runtime_library_open(
        VGPU_LIBVIRT_SONAME, vgpu_libvirt_names, vgpu_libvirt_functions, vgpu_libvirt_function_count,
        " (libvirt too old)", vgpu_libvirt_problem_text, sizeof vgpu_libvirt_problem_text);
}

const char *vgpu_libvirt_load(void) {
    pthread_once(&vgpu_libvirt_once, vgpu_libvirt_open);
    return vgpu_libvirt_problem;
}

/* The function in slot `name`, typed as libvirt declares it. Callers reach libvirt only after
 * vgpu_libvirt_load() succeeded; a call before that is a programming error and stops here with
 * the reason rather than jumping to address 0. */
#define VGPU_CALL(name) ((__typeof__(&name))vgpu_libvirt_function(vgpu_slot_##name))

static void *vgpu_libvirt_function(int slot) {
    const char *problem = vgpu_libvirt_load();
    if (problem != NULL) {
        fprintf(stderr, "vgpu-migrate: libvirt is not usable: %s\n", problem);
        abort();
    }
    return vgpu_libvirt_functions[slot];
}

int virConnectClose(virConnectPtr conn) { return VGPU_CALL(virConnectClose)(conn); }

int virConnectCompareHypervisorCPU(virConnectPtr conn, const char *emulator, const char *arch,
                                   const char *machine, const char *virttype, const char *xmlCPU,
                                   unsigned int flags) {
    return VGPU_CALL(virConnectCompareHypervisorCPU)(conn, emulator, arch, machine, virttype, xmlCPU, flags);
}

int virConnectDomainEventDeregisterAny(virConnectPtr conn, int callbackID) {
    return VGPU_CALL(virConnectDomainEventDeregisterAny)(conn, callbackID);
}

int virConnectDomainEventRegisterAny(virConnectPtr conn, virDomainPtr dom, int eventID,
                                     virConnectDomainEventGenericCallback cb, void *opaque,
                                     virFreeCallback freecb) {
    return VGPU_CALL(virConnectDomainEventRegisterAny)(conn, dom, eventID, cb, opaque, freecb);
}

char *virConnectGetCapabilities(virConnectPtr conn) { return VGPU_CALL(virConnectGetCapabilities)(conn); }

char *virConnectGetHostname(virConnectPtr conn) { return VGPU_CALL(virConnectGetHostname)(conn); }

int virConnectGetLibVersion(virConnectPtr conn, unsigned long *libVer) {
    return VGPU_CALL(virConnectGetLibVersion)(conn, libVer);
}

int virConnectGetVersion(virConnectPtr conn, unsigned long *hvVer) {
    return VGPU_CALL(virConnectGetVersion)(conn, hvVer);
}

int virConnectListAllDomains(virConnectPtr conn, virDomainPtr **domains, unsigned int flags) {
    return VGPU_CALL(virConnectListAllDomains)(conn, domains, flags);
}

int virConnectListAllNodeDevices(virConnectPtr conn, virNodeDevicePtr **devices, unsigned int flags) {
    return VGPU_CALL(virConnectListAllNodeDevices)(conn, devices, flags);
}

virConnectPtr virConnectOpen(const char *name) { return VGPU_CALL(virConnectOpen)(name); }

virConnectPtr virConnectOpenReadOnly(const char *name) { return VGPU_CALL(virConnectOpenReadOnly)(name); }

int virDomainAbortJob(virDomainPtr dom) { return VGPU_CALL(virDomainAbortJob)(dom); }

int virDomainFree(virDomainPtr domain) { return VGPU_CALL(virDomainFree)(domain); }

const char *virDomainGetName(virDomainPtr domain) { return VGPU_CALL(virDomainGetName)(domain); }

int virDomainGetJobStats(virDomainPtr domain, int *type, virTypedParameterPtr *params, int *nparams,
                         unsigned int flags) {
    return VGPU_CALL(virDomainGetJobStats)(domain, type, params, nparams, flags);
}

int virDomainGetUUIDString(virDomainPtr domain, char *buf) { return VGPU_CALL(virDomainGetUUIDString)(domain, buf); }

char *virDomainGetXMLDesc(virDomainPtr domain, unsigned int flags) {
    return VGPU_CALL(virDomainGetXMLDesc)(domain, flags);
}

int virDomainIsActive(virDomainPtr dom) { return VGPU_CALL(virDomainIsActive)(dom); }

virDomainPtr virDomainLookupByName(virConnectPtr conn, const char *name) {
    return VGPU_CALL(virDomainLookupByName)(conn, name);
}

virDomainPtr virDomainLookupByUUIDString(virConnectPtr conn, const char *uuid) {
    return VGPU_CALL(virDomainLookupByUUIDString)(conn, uuid);
}

int virDomainMigrateSetMaxDowntime(virDomainPtr domain, unsigned long long downtime, unsigned int flags) {
    return VGPU_CALL(virDomainMigrateSetMaxDowntime)(domain, downtime, flags);
}

int virDomainMigrateToURI3(virDomainPtr domain, const char *dconnuri, virTypedParameterPtr params,
                           unsigned int nparams, unsigned int flags) {
    return VGPU_CALL(virDomainMigrateToURI3)(domain, dconnuri, params, nparams, flags);
}

int virEventRegisterDefaultImpl(void) { return VGPU_CALL(virEventRegisterDefaultImpl)(); }

int virEventRunDefaultImpl(void) { return VGPU_CALL(virEventRunDefaultImpl)(); }

virErrorPtr virGetLastError(void) { return VGPU_CALL(virGetLastError)(); }

int virInitialize(void) { return VGPU_CALL(virInitialize)(); }

int virNodeDeviceFree(virNodeDevicePtr dev) { return VGPU_CALL(virNodeDeviceFree)(dev); }

const char *virNodeDeviceGetName(virNodeDevicePtr dev) { return VGPU_CALL(virNodeDeviceGetName)(dev); }

char *virNodeDeviceGetXMLDesc(virNodeDevicePtr dev, unsigned int flags) {
    return VGPU_CALL(virNodeDeviceGetXMLDesc)(dev, flags);
}

unsigned long long virNodeGetFreeMemory(virConnectPtr conn) { return VGPU_CALL(virNodeGetFreeMemory)(conn); }

int virNodeGetInfo(virConnectPtr conn, virNodeInfoPtr info) { return VGPU_CALL(virNodeGetInfo)(conn, info); }

int virNodeGetMemoryStats(virConnectPtr conn, int cellNum, virNodeMemoryStatsPtr params, int *nparams,
                          unsigned int flags) {
    return VGPU_CALL(virNodeGetMemoryStats)(conn, cellNum, params, nparams, flags);
}

void virSetErrorFunc(void *userData, virErrorFunc handler) { VGPU_CALL(virSetErrorFunc)(userData, handler); }

int virTypedParamsAddInt(virTypedParameterPtr *params, int *nparams, int *maxparams, const char *name, int value) {
    return VGPU_CALL(virTypedParamsAddInt)(params, nparams, maxparams, name, value);
}

int virTypedParamsAddString(virTypedParameterPtr *params, int *nparams, int *maxparams, const char *name,
                            const char *value) {
    return VGPU_CALL(virTypedParamsAddString)(params, nparams, maxparams, name, value);
}

int virTypedParamsAddULLong(virTypedParameterPtr *params, int *nparams, int *maxparams, const char *name,
                            unsigned long long value) {
    return VGPU_CALL(virTypedParamsAddULLong)(params, nparams, maxparams, name, value);
}

void virTypedParamsFree(virTypedParameterPtr params, int nparams) { VGPU_CALL(virTypedParamsFree)(params, nparams); }

int virTypedParamsGetInt(virTypedParameterPtr params, int nparams, const char *name, int *value) {
    return VGPU_CALL(virTypedParamsGetInt)(params, nparams, name, value);
}

int virTypedParamsGetString(virTypedParameterPtr params, int nparams, const char *name, const char **value) {
    return VGPU_CALL(virTypedParamsGetString)(params, nparams, name, value);
}

int virTypedParamsGetULLong(virTypedParameterPtr params, int nparams, const char *name, unsigned long long *value) {
    return VGPU_CALL(virTypedParamsGetULLong)(params, nparams, name, value);
}

#pragma GCC visibility pop
