#ifndef VGPU_MIGRATE_CLIBVIRT_H
#define VGPU_MIGRATE_CLIBVIRT_H
/*
 * libvirt's API as Swift sees it. The functions are not linked: libvirt_loader.c opens
 * libvirt.so.0 the first time a command needs libvirt (vgpu_libvirt_load), so commands that never
 * talk to a host (history, show, policy) start without loading libvirt and the ~50 libraries it
 * pulls in, and run on machines without libvirt.
 */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

/*
 * Opens libvirt's client library and looks up every function the project calls. Safe to call
 * from any thread, any number of times; the work is done once. Returns NULL when libvirt is
 * usable, else why not (the dynamic loader's message, or the first function the library lacks);
 * the text stays valid for the life of the process.
 */
const char *vgpu_libvirt_load(void);
#endif
