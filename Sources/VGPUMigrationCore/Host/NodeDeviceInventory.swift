/// Builds a host's GPUs from libvirt node devices: the second source of host facts, for
/// hosts reached only through libvirt.
///
/// libvirt shows mdev parents (`mdev_types`) and mdevs, but neither the mdev type
/// descriptions nor NVIDIA's vendor-specific VF files, so framebuffer sizes come from the type
/// names and per-GPU limits from the board table; vendor-specific VF vGPUs are not visible.
package enum NodeDeviceInventory {
    package static func physicalGPUs(devices: [NodeDevice], catalog: GPUBoardCatalog) -> (
        gpus: [PhysicalGPU], diagnostics: [Diagnostic]
    ) {
        var diagnostics: [Diagnostic] = []
        var addressesByName: [String: DeviceAddress] = [:]
        var identities: [PCIAddress: PCIIdentity] = [:]
        for device in devices {
            if let pci = device.pci {
                addressesByName[device.name] = .pci(pci.address)
                identities[pci.address] = pci.identity
            }
        }

        var functions: [ObservedFunction] = []
        for device in devices where !device.mdevTypes.isEmpty {
            let types = device.mdevTypes.map {
                (
                    info: VGPUTypeInfo(id: $0.id, name: $0.name, deviceAPI: $0.deviceAPI),
                    available: $0.availableInstances
                )
            }
            guard let pci = device.pci else {
                // A parent on no PCI bus (s390's css and ap matrix, a virtual device): by libvirt's name.
                guard let address = DeviceAddress(device.name), address.pciAddress == nil else {
                    diagnostics.append(
                        Diagnostic(.warning, "mdev parent '\(device.name)' has a name this tool cannot use; skipped"))
                    continue
                }
                addressesByName[device.name] = address
                functions.append(
                    ObservedFunction(address: address, pci: nil, physicalFunction: nil, interface: .mdev, types: types))
                continue
            }
            functions.append(
                ObservedFunction(
                    address: .pci(pci.address), pci: pci.identity, physicalFunction: pci.physicalFunction,
                    interface: .mdev, types: types))
        }

        var vgpus: [ExistingVGPU] = []
        for device in devices {
            guard let mdev = device.mdev else { continue }
            guard let uuid = mdev.uuid else {
                diagnostics.append(
                    Diagnostic(.warning, "mdev node device '\(device.name)' has no UUID and is skipped"))
                continue
            }
            guard let parentName = device.parent,
                let parent = addressesByName[parentName]
                    ?? Self.address(nodeDeviceName: parentName).map(DeviceAddress.pci)
            else {
                if device.parent.map({ $0.hasPrefix("pci_") }) ?? true {
                    diagnostics.append(
                        Diagnostic(
                            .warning,
                            "mdev \(uuid) has no parent device libvirt shows ('\(device.parent ?? "none")'); skipped"))
                }
                continue
            }
            vgpus.append(ExistingVGPU(id: uuid, interface: .mdev, typeID: mdev.typeID, typeName: nil, function: parent))
        }

        let physicalFunctionIDs = identities.filter { address, _ in
            functions.contains { $0.physicalFunction == address }
        }
        let built = HostInventoryBuilder.physicalGPUs(
            functions: functions, vgpus: vgpus, physicalFunctionIDs: physicalFunctionIDs, catalog: catalog)
        return (built.gpus, diagnostics + built.diagnostics)
    }

    /// `pci_0000_3b_00_4` → 0000:3b:00.4.
    package static func address(nodeDeviceName name: String) -> PCIAddress? {
        let parts = name.split(separator: "_")
        guard parts.count == 5, parts[0] == "pci" else { return nil }
        return PCIAddress("\(parts[1]):\(parts[2]):\(parts[3]).\(parts[4])")
    }
}
