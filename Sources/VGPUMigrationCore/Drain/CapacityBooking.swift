extension PhysicalGPU {
    /// Books one more vGPU of type `typeID` on this GPU, as creating it would change the host's
    /// facts, and returns the function (VF or mdev parent) that carries it; nil when the GPU has
    /// no room for the type.
    ///
    /// The capacity of every type is then worked out again by the rules the host's facts were
    /// built with (free VFs, `max_instance`, framebuffer-size homogeneity), so a plan never
    /// counts a slot the hardware would refuse:
    /// - on an SR-IOV GPU the first free VF offering the type is taken whole (a VF carries one
    ///   vGPU); a vendor-specific VF then names the type as its current one;
    /// - on a GPU without SR-IOV the function's `available_instances` of the type drops by one,
    ///   and of its other types by one as well, since the kernel's types of one parent share its
    ///   resources (mtty's single- and dual-port types share its ports; NVIDIA's other sizes are
    ///   blocked by homogeneity anyway). That is never fewer than the hardware takes for one
    ///   device of the smallest type.
    package mutating func book(typeID: String, vgpuID: String) -> DeviceAddress? {
        guard let capacity = capacity(ofType: typeID), capacity.free > 0 else { return nil }
        guard
            let index = functions.firstIndex(where: { function in
                (!sriov || function.currentVGPUTypeID == nil)
                    && function.offers.contains { $0.typeID == typeID && $0.availableInstances > 0 }
            })
        else { return nil }
        for offer in functions[index].offers.indices {
            if sriov {
                functions[index].offers[offer].availableInstances = 0
            } else {
                functions[index].offers[offer].availableInstances = max(
                    0, functions[index].offers[offer].availableInstances - 1)
            }
        }
        if sriov && functions[index].interface == .vendorVFIO { functions[index].currentVGPUTypeID = typeID }
        let function = functions[index].address
        vgpus.append(
            ExistingVGPU(
                id: vgpuID, interface: interface, typeID: typeID, typeName: capacity.type.name, function: function))
        vgpuTypes = Self.capacities(
            types: vgpuTypes.map(\.type), functions: functions, vgpus: vgpus, sriov: sriov, nvidia: isNVIDIA,
            board: board)
        return function
    }
}
