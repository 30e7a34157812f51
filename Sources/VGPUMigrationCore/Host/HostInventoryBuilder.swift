/// What a source of host facts (sysfs, libvirt node devices) saw of one device that offers
/// vGPUs (a PCI function, or an mdev parent of another kind).
package struct ObservedFunction: Sendable, Hashable {
    package var address: DeviceAddress
    package var pci: PCIIdentity?
    package var physicalFunction: PCIAddress?
    package var interface: VGPUInterface
    /// Types the function lists, with their current `available_instances` (mdev) or 1/0 (a
    /// type listed as creatable on a free / occupied vendor VF).
    package var types: [(info: VGPUTypeInfo, available: Int)]
    package var currentVGPUTypeID: String?

    package init(
        address: DeviceAddress, pci: PCIIdentity?, physicalFunction: PCIAddress?, interface: VGPUInterface,
        types: [(info: VGPUTypeInfo, available: Int)], currentVGPUTypeID: String? = nil
    ) {
        self.address = address
        self.pci = pci
        self.physicalFunction = physicalFunction
        self.interface = interface
        self.types = types
        self.currentVGPUTypeID = currentVGPUTypeID
    }

    package static func == (lhs: ObservedFunction, rhs: ObservedFunction) -> Bool {
        lhs.address == rhs.address && lhs.pci == rhs.pci && lhs.physicalFunction == rhs.physicalFunction
            && lhs.interface == rhs.interface && lhs.currentVGPUTypeID == rhs.currentVGPUTypeID
            && lhs.types.map(\.info) == rhs.types.map(\.info)
            && lhs.types.map(\.available) == rhs.types.map(\.available)
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(currentVGPUTypeID)
    }
}

/// Turns observations of PCI functions and vGPUs into ``PhysicalGPU`` values with capacity.
///
/// Capacity of a type on one physical GPU follows the hardware:
/// - on an SR-IOV GPU each VF carries at most one vGPU, so the VF count that can still take
///   the type bounds it; without SR-IOV the parent's `available_instances` does;
/// - the type's `max_instance` (mdev description, else the board table) bounds the vGPUs of
///   that framebuffer size on the GPU;
/// - time-sliced vGPUs on one GPU must be homogeneous: once a vGPU exists, only types with the
///   same framebuffer size can be added.
///
/// The last two are NVIDIA's rules. For mdev parents of other kinds (mtty's virtual device,
/// another vendor's GPU) the kernel's `available_instances` is the capacity.
package enum HostInventoryBuilder {
    package static func physicalGPUs(
        functions: [ObservedFunction], vgpus: [ExistingVGPU], physicalFunctionIDs: [PCIAddress: PCIIdentity],
        catalog: GPUBoardCatalog
    ) -> (gpus: [PhysicalGPU], diagnostics: [Diagnostic]) {
        var diagnostics: [Diagnostic] = []
        let groups = Dictionary(grouping: functions) { $0.physicalFunction.map(DeviceAddress.pci) ?? $0.address }
        var gpus: [PhysicalGPU] = []
        for (gpuAddress, members) in groups.sorted(by: { $0.key < $1.key }) {
            let members = members.sorted { $0.address < $1.address }
            let memberAddresses = Set(members.map(\.address))
            let sriov = members.contains { $0.physicalFunction != nil }
            let physicalFunctionIdentity = gpuAddress.pciAddress.flatMap { physicalFunctionIDs[$0] }
            let physicalFunctionVisible = !sriov || physicalFunctionIdentity != nil
            let pci =
                physicalFunctionIdentity ?? members.first(where: { $0.address == gpuAddress })?.pci
                ?? members.first?.pci

            // Every type any member lists, first description wins (they agree on real hosts).
            var types: [String: VGPUTypeInfo] = [:]
            for member in members {
                for (info, _) in member.types where types[info.id] == nil { types[info.id] = info }
            }
            let gpuVGPUs = vgpus.filter { memberAddresses.contains($0.function) }.sorted { $0.id < $1.id }
            for vgpu in gpuVGPUs where types[vgpu.typeID] == nil {
                types[vgpu.typeID] = VGPUTypeInfo(id: vgpu.typeID, name: vgpu.typeName)
            }
            let named = gpuVGPUs.map { vgpu in
                var vgpu = vgpu
                if vgpu.typeName == nil { vgpu.typeName = types[vgpu.typeID]?.name }
                return vgpu
            }

            let board = catalog.identify(pci: pci, vgpuTypeNames: types.values.compactMap(\.name))
            let nvidia = PhysicalGPU.isNVIDIA(
                pci: pci, board: board, interface: members.first!.interface, typeIDs: types.keys)
            if board == nil, pci?.vendor == PCIIdentity.nvidiaVendorID {
                diagnostics.append(
                    Diagnostic(
                        .warning,
                        "GPU \(gpuAddress) (PCI id \(pci.map { hex($0.vendor, width: 4) + ":" + hex($0.device, width: 4) } ?? "unknown")) is not in the board table",
                        remedy: "add the board to policies/gpu-boards.yaml; until then its dirty-page tracking "
                            + "and vGPU limits are unknown"))
            }
            let usedFramebuffers = Set(
                named.compactMap { vgpu -> UInt64? in
                    guard let info = types[vgpu.typeID], info.profile?.isTimeSliced ?? true else { return nil }
                    return info.framebufferMiB
                })
            if nvidia, named.contains(where: { types[$0.typeID]?.framebufferMiB == nil }) {
                diagnostics.append(
                    Diagnostic(
                        .warning,
                        "GPU \(gpuAddress) carries a vGPU whose type size is unknown, so homogeneity cannot be checked",
                        remedy: "make sure the driver lists the type's name on the GPU"))
            }

            var capacities: [VGPUTypeCapacity] = []
            for info in types.values.sorted(by: { $0.sortKey < $1.sortKey }) {
                let used = named.filter { $0.typeID == info.id }.count
                let maxInstances = info.descriptionMaxInstances ?? info.profile.flatMap { board?.maxInstances(of: $0) }
                let slots: Int
                if sriov {
                    slots =
                        members.filter { member in
                            member.currentVGPUTypeID == nil
                                && member.types.contains { $0.info.id == info.id && $0.available > 0 }
                        }.count
                } else {
                    slots = members.reduce(0) { sum, member in
                        sum + (member.types.first { $0.info.id == info.id }?.available ?? 0)
                    }
                }
                var free = slots
                var blockedBy: String?
                let timeSliced = nvidia && (info.profile?.isTimeSliced ?? true)
                if timeSliced, let size = info.framebufferMiB, let other = usedFramebuffers.first(where: { $0 != size })
                {
                    free = 0
                    blockedBy =
                        "homogeneity: the GPU already carries \(other) MiB vGPUs; time-sliced vGPUs on one GPU must all have the same framebuffer size"
                } else if let maxInstances, timeSliced {
                    let sameSize = named.filter { types[$0.typeID]?.framebufferMiB == info.framebufferMiB }.count
                    if maxInstances - sameSize < free {
                        free = max(0, maxInstances - sameSize)
                        if free == 0 {
                            blockedBy = "max_instances: the GPU carries \(sameSize) of at most \(maxInstances)"
                        }
                    }
                }
                if free == 0 && blockedBy == nil {
                    blockedBy =
                        sriov
                        ? "no free VF: no free virtual function offers this type"
                        : "none available: the driver reports no available instances"
                }
                capacities.append(
                    VGPUTypeCapacity(
                        type: info, free: max(0, free), used: used, maxInstances: maxInstances, blockedBy: blockedBy))
            }

            gpus.append(
                PhysicalGPU(
                    address: gpuAddress, physicalFunctionVisible: physicalFunctionVisible, pci: pci, board: board,
                    interface: members.first!.interface, sriov: sriov,
                    functions: members.map { member in
                        VGPUFunction(
                            address: member.address, physicalFunction: member.physicalFunction,
                            interface: member.interface,
                            offers: member.types.map {
                                VGPUTypeOffer(typeID: $0.info.id, availableInstances: $0.available)
                            }, currentVGPUTypeID: member.currentVGPUTypeID)
                    }, vgpuTypes: capacities, vgpus: named))
        }
        return (gpus, diagnostics)
    }
}
