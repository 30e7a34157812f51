#ifndef VGPU_MIGRATE_CLIBVIRT_SHIM_H
#define VGPU_MIGRATE_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif
