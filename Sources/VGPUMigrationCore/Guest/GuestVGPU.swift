/// One vGPU of a guest, matched with what the host it runs on says about it.
package struct GuestVGPU: Sendable, Hashable {
    /// How the domain XML refers to the device.
    package var source: HostdevSource
    /// The host's vGPU, when the host shows it.
    package var hostVGPU: ExistingVGPU?
    /// The host's type description, when known.
    package var type: VGPUTypeInfo?
    /// The physical GPU (or mdev parent) carrying it, when known.
    package var gpuAddress: DeviceAddress?
}

extension GuestDomain {
    /// The guest's vGPUs on `host`: every mdev hostdev, and every PCI hostdev that is a VF
    /// carrying an NVIDIA vendor-specific vGPU on that host. PCI hostdevs that are not vGPUs
    /// (a NIC VF, a whole GPU) are not included.
    ///
    /// An mdev the host does not show is still returned (without host details): the caller
    /// decides whether that is an error.
    package func vgpus(on host: HostInventory) -> [GuestVGPU] {
        // A guest has a vGPU or two: looking each up beats indexing every vGPU of the host.
        hostdevs.compactMap { hostdev -> GuestVGPU? in
            let key: String
            switch hostdev.source {
            case .mdev(let uuid): key = uuid
            case .pci(let address): key = address.description
            }
            for gpu in host.gpus {
                guard let vgpu = gpu.vgpus.first(where: { $0.id == key }) else { continue }
                return GuestVGPU(
                    source: hostdev.source, hostVGPU: vgpu, type: gpu.capacity(ofType: vgpu.typeID)?.type,
                    gpuAddress: gpu.address)
            }
            if case .mdev = hostdev.source {
                return GuestVGPU(source: hostdev.source, hostVGPU: nil, type: nil, gpuAddress: nil)
            }
            return nil
        }
    }
}
