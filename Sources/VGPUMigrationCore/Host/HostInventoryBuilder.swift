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
            if nvidia, named.contains(where: { types[$0.typeID]?.framebufferMiB == nil }) {
                diagnostics.append(
                    Diagnostic(
                        .warning,
                        "GPU \(gpuAddress) carries a vGPU whose type size is unknown, so homogeneity cannot be checked",
                        remedy: "make sure the driver lists the type's name on the GPU"))
            }
            let functions = members.map { member in
                VGPUFunction(
                    address: member.address, physicalFunction: member.physicalFunction,
                    interface: member.interface,
                    offers: member.types.map {
                        VGPUTypeOffer(typeID: $0.info.id, availableInstances: $0.available)
                    }, currentVGPUTypeID: member.currentVGPUTypeID)
            }
            let capacities = PhysicalGPU.capacities(
                types: types.values.sorted(by: { $0.sortKey < $1.sortKey }), functions: functions, vgpus: named,
                sriov: sriov, nvidia: nvidia, board: board)

            gpus.append(
                PhysicalGPU(
                    address: gpuAddress, physicalFunctionVisible: physicalFunctionVisible, pci: pci, board: board,
                    interface: members.first!.interface, sriov: sriov,
                    functions: functions, vgpuTypes: capacities, vgpus: named))
        }
        return (gpus, diagnostics)
    }
}

extension PhysicalGPU {
    /// The capacity of each type on one GPU, by the rules ``HostInventoryBuilder`` states: free
    /// VFs (SR-IOV) or `available_instances`, bounded by `max_instance` of the size, and blocked
    /// by a vGPU of another framebuffer size (time-sliced NVIDIA vGPUs are homogeneous).
    static func capacities(
        types: [VGPUTypeInfo], functions: [VGPUFunction], vgpus: [ExistingVGPU], sriov: Bool, nvidia: Bool,
        board: GPUBoard?
    ) -> [VGPUTypeCapacity] {
        // Linear scans over a GPU's few types, vGPUs and functions: no hashing, no allocation
        // beyond the arrays below (the planner works this out again after every booking).
        func typeIndex(_ id: String) -> Int? { types.firstIndex { $0.id == id } }
        var usedByType = [Int](repeating: 0, count: types.count)
        var usedFramebuffers: [UInt64] = []
        // Sizes of the vGPUs; nil for a vGPU whose size is unknown.
        var usedSizes: [UInt64?] = []
        for vgpu in vgpus {
            let index = typeIndex(vgpu.typeID)
            if let index { usedByType[index] += 1 }
            let info = index.map { types[$0] }
            usedSizes.append(info?.framebufferMiB)
            if let info, let size = info.framebufferMiB, info.profile?.isTimeSliced ?? true,
                !usedFramebuffers.contains(size)
            {
                usedFramebuffers.append(size)
            }
        }
        // Per type: free VFs offering it (SR-IOV), or the parents' available instances.
        var freeVFs = [Int](repeating: 0, count: types.count)
        var available = [Int](repeating: 0, count: types.count)
        for function in functions {
            for offer in function.offers {
                guard let index = typeIndex(offer.typeID) else { continue }
                available[index] += offer.availableInstances
                if function.currentVGPUTypeID == nil && offer.availableInstances > 0 { freeVFs[index] += 1 }
            }
        }
        // The homogeneity reason names the size in use; most types share it, so it is made once.
        var homogeneity: (size: UInt64, reason: String)?
        func homogeneityReason(_ other: UInt64) -> String {
            if let homogeneity, homogeneity.size == other { return homogeneity.reason }
            let reason =
                "homogeneity: the GPU already carries \(other) MiB vGPUs; time-sliced vGPUs on one GPU must all have the same framebuffer size"
            homogeneity = (other, reason)
            return reason
        }
        var capacities: [VGPUTypeCapacity] = []
        capacities.reserveCapacity(types.count)
        for (index, info) in types.enumerated() {
            let used = usedByType[index]
            let maxInstances = info.descriptionMaxInstances ?? info.profile.flatMap { board?.maxInstances(of: $0) }
            let slots = sriov ? freeVFs[index] : available[index]
            var free = slots
            var blockedBy: String?
            let timeSliced = nvidia && (info.profile?.isTimeSliced ?? true)
            if timeSliced, let size = info.framebufferMiB, let other = usedFramebuffers.first(where: { $0 != size }) {
                free = 0
                blockedBy = homogeneityReason(other)
            } else if let maxInstances, timeSliced {
                let sameSize = usedSizes.filter { $0 == info.framebufferMiB }.count
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
        return capacities
    }
}
