import Foundation
import VGPUMigrationCore

/// Creates and removes vGPUs the way the hardware wants:
/// - on mdev hosts by writing a UUID to the type's `create` (removal through the mdev's
///   `remove`); on vendor-specific VFs by writing the type number to `current_vgpu_type` (`0`
///   frees it);
/// - choosing GPUs that already carry the same type first (time-sliced GPUs stay homogeneous
///   and other GPUs stay free for other sizes), then the emptiest, and on SR-IOV GPUs a VF that
///   is free and offers the type;
/// - never more than the policy's `max_instances` of a type per GPU, when it sets one.
package struct VGPUAllocator: Sendable {
    package var sysfs: any SysfsIO
    package var catalog: GPUBoardCatalog
    /// Per-type limit per physical GPU from policy (Nova's `max_instances`), by type id.
    package var maxInstances: [String: Int]

    package init(sysfs: any SysfsIO, catalog: GPUBoardCatalog, maxInstances: [String: Int] = [:]) {
        self.sysfs = sysfs
        self.catalog = catalog
        self.maxInstances = maxInstances
    }

    /// The host as it is now.
    package func inventory() throws(SysfsError) -> HostInventory {
        try SysfsHostProbe(sysfs: sysfs, catalog: catalog).inventory()
    }

    /// Picks where `count` vGPUs of `typeID` go, with fresh mdev UUIDs; creates nothing.
    ///
    /// Devices in `prefer` (GPUs, mdev parents or VFs, in that order) are used first while they
    /// can take the type; the rest follow the usual choice. A preference never overrides a
    /// limit: a preferred GPU that carries another size, is full, or is at `max_instances` is
    /// passed over like any other.
    package func plan(typeID: String, count: Int, prefer: [DeviceAddress] = []) throws(AllocationError)
        -> [ReservedDevice]
    {
        let host: HostInventory
        do {
            host = try inventory()
        } catch {
            throw .host(error)
        }
        let offering = host.gpus.filter { $0.capacity(ofType: typeID) != nil }
        guard !offering.isEmpty else { throw .unknownType(typeID) }
        // A GPU's place in `prefer`: its own address, or the first of its functions named there.
        let preferred = Dictionary(prefer.enumerated().map { ($1, $0) }, uniquingKeysWith: min)
        func preference(_ gpu: PhysicalGPU) -> Int {
            let own = preferred[gpu.address] ?? Int.max
            return gpu.functions.reduce(own) { min($0, preferred[$1.address] ?? Int.max) }
        }
        let ranked = offering.sorted { a, b in
            let preferenceA = preference(a)
            let preferenceB = preference(b)
            if preferenceA != preferenceB { return preferenceA < preferenceB }
            let usedA = a.capacity(ofType: typeID)!.used
            let usedB = b.capacity(ofType: typeID)!.used
            if (usedA > 0) != (usedB > 0) { return usedA > 0 }
            if a.vgpus.count != b.vgpus.count { return a.vgpus.count < b.vgpus.count }
            return a.address < b.address
        }
        var planned: [ReservedDevice] = []
        for gpu in ranked where planned.count < count {
            let capacity = gpu.capacity(ofType: typeID)!
            var free = capacity.free
            if let limit = maxInstances[typeID] { free = min(free, max(0, limit - capacity.used)) }
            var takenFunctions = Set<DeviceAddress>()
            // Preferred functions first, in the order asked; then the others as the GPU lists them.
            let functions =
                prefer.compactMap { address in gpu.functions.first { $0.address == address } }
                + gpu.functions.filter { preferred[$0.address] == nil }
            while free > 0 && planned.count < count {
                let function: VGPUFunction?
                if gpu.sriov || gpu.interface == .vendorVFIO {
                    function = functions.first { candidate in
                        !takenFunctions.contains(candidate.address) && candidate.currentVGPUTypeID == nil
                            && !gpu.vgpus.contains { $0.function == candidate.address }
                            && candidate.offers.contains { $0.typeID == typeID && $0.availableInstances > 0 }
                    }
                } else {
                    function = functions.first { $0.offers.contains { $0.typeID == typeID } }
                }
                guard let function else { break }
                takenFunctions.insert(function.address)
                let id = gpu.interface == .mdev ? UUID().uuidString.lowercased() : function.address.description
                planned.append(
                    ReservedDevice(
                        id: id, interface: gpu.interface, typeID: typeID, function: function.address, gpu: gpu.address))
                free -= 1
            }
        }
        guard planned.count == count else {
            let name = offering.first?.capacity(ofType: typeID)?.type.name ?? typeID
            throw .noCapacity("the host can create \(planned.count) more \(name) (\(typeID)), \(count) asked for")
        }
        return planned
    }

    /// Creates one planned device.
    package func create(_ device: ReservedDevice) throws(SysfsError) {
        switch device.interface {
        case .mdev:
            try sysfs.writeFile(
                "sys/class/mdev_bus/\(device.function)/mdev_supported_types/\(device.typeID)/create", device.id)
        case .vendorVFIO:
            try sysfs.writeFile("sys/bus/pci/devices/\(device.function)/nvidia/current_vgpu_type", device.typeID)
        }
    }

    /// Removes a device; a device that is already gone is not an error.
    package func remove(_ device: ReservedDevice) throws(SysfsError) {
        guard try exists(device) else { return }
        switch device.interface {
        case .mdev:
            try sysfs.writeFile("sys/bus/mdev/devices/\(device.id)/remove", "1")
        case .vendorVFIO:
            try sysfs.writeFile("sys/bus/pci/devices/\(device.function)/nvidia/current_vgpu_type", "0")
        }
    }

    /// The processes that hold `device` open (its VFIO group or device node): a VM's QEMU, or
    /// one a libvirt daemon that died left behind. The kernel does not remove an mdev while one
    /// does: the write to `remove` waits until it is closed. Found as `fuser` finds them, through
    /// `proc/PID/fd`; a process that ends or cannot be read while looked at is passed over.
    package func holders(of device: ReservedDevice) throws(SysfsError) -> [DeviceHolder] {
        try Self.holders(
            ofDeviceAt: device.interface == .mdev
                ? "sys/bus/mdev/devices/\(device.id)" : "sys/bus/pci/devices/\(device.function)",
            in: sysfs)
    }

    /// The processes that hold the device whose sysfs directory is `base` open in the tree `sysfs`.
    static func holders(ofDeviceAt base: String, in sysfs: any SysfsIO) throws(SysfsError) -> [DeviceHolder] {
        var nodes: Set<String> = []
        if let group = try sysfs.readLink("\(base)/iommu_group")?.split(separator: "/").last {
            nodes.insert("/dev/vfio/\(group)")
        }
        for name in try sysfs.listDirectory("\(base)/vfio-dev") ?? [] { nodes.insert("/dev/vfio/devices/\(name)") }
        guard !nodes.isEmpty else { return [] }
        var holders: [DeviceHolder] = []
        for pid in try sysfs.listDirectory("proc") ?? [] where pid.allSatisfy(\.isASCIIDigit) {
            guard let descriptors = try? sysfs.listDirectory("proc/\(pid)/fd") else { continue }
            for descriptor in descriptors {
                guard let target = try? sysfs.readLink("proc/\(pid)/fd/\(descriptor)"), nodes.contains(target) else {
                    continue
                }
                let command = (try? sysfs.readFile("proc/\(pid)/comm")).flatMap { $0 }?.trimmingXMLWhitespace()
                holders.append(DeviceHolder(pid: Int(pid) ?? 0, command: command ?? "?"))
                break
            }
        }
        return holders
    }

    /// Whether the device is on the host now.
    package func exists(_ device: ReservedDevice) throws(SysfsError) -> Bool {
        switch device.interface {
        case .mdev:
            return try sysfs.readLink("sys/bus/mdev/devices/\(device.id)") != nil
        case .vendorVFIO:
            let current = try sysfs.readFile("sys/bus/pci/devices/\(device.function)/nvidia/current_vgpu_type")
            return current?.trimmingXMLWhitespace() == device.typeID
        }
    }
}

/// A process that holds a vGPU open.
package struct DeviceHolder: Sendable, Hashable, CustomStringConvertible {
    package var pid: Int
    /// Its command name (`proc/PID/comm`): `qemu-system-x86`.
    package var command: String

    package init(pid: Int, command: String) {
        self.pid = pid
        self.command = command
    }

    package var description: String { "process \(pid) (\(command))" }
}

/// Why vGPUs cannot be allocated.
package enum AllocationError: Error, Sendable, CustomStringConvertible {
    case unknownType(String)
    case noCapacity(String)
    case host(SysfsError)

    package var description: String {
        switch self {
        case .unknownType(let type): "no GPU on this host offers vGPU type \(type)"
        case .noCapacity(let message): "no capacity: \(message)"
        case .host(let error): "cannot read the host: \(error)"
        }
    }
}
