import Foundation
import VGPUMigrationCore

/// ``SysfsIO`` over a captured or fixture tree that behaves like the kernel and the NVIDIA
/// driver when written to, so the agent can run over a tree as over a live host:
///
/// - writing a UUID to `sys/class/mdev_bus/<parent>/mdev_supported_types/<type>/create` makes the
///   mdev (its directory with `mdev_type` and `remove`, the `sys/bus/mdev/devices/<uuid>` link);
///   an invalid UUID is `EINVAL`, an existing one `EEXIST`, an exhausted type `EUSERS`;
/// - writing `1` to `sys/bus/mdev/devices/<uuid>/remove` removes it; an unknown device is `ENOENT`;
///   each mdev gets an IOMMU group of its own (`iommu_group`), and while a process holds the
///   group open (a `proc/PID/fd/N` link to `/dev/vfio/GROUP` in the tree) the write is `EBUSY`,
///   where the kernel would wait until the device is closed;
/// - writing a type number to a vendor VF's `nvidia/current_vgpu_type` creates that vGPU, `0`
///   frees it; a busy VF is `EBUSY`, a type the VF does not list as creatable is `EINVAL`;
/// - after every change `available_instances` and `creatable_vgpu_types` are rewritten as the
///   driver would: an SR-IOV VF carries one vGPU, a GPU carries at most `max_instance` vGPUs of
///   a size, and time-sliced vGPUs on one GPU share one framebuffer size;
/// - an mdev parent of another kind (the sample driver mtty, another vendor's GPU) has one pool
///   its types draw from in proportion to their counts on an empty parent: mtty's 24 ports make
///   24 single-port or 12 dual-port devices, and one dual-port device leaves 22 and 11.
///
/// A process killed at any instant leaves a tree the next emulator reads: every file is replaced
/// whole (``AtomicFile``), an mdev is built under a temporary name and appears with its
/// `sys/bus/mdev/devices` link, and before its first change the emulator keeps what the empty
/// devices offer in `.vgpu-emulator.json` at the root. An emulator opened on a tree it changed
/// before removes what a killed one left half done (temporary files, an mdev without its bus
/// link) and rewrites the counts from the devices there.
package final class SysfsEmulator: SysfsIO, @unchecked Sendable {
    /// The file at the root that holds what the empty devices offer.
    package static let stateFileName = ".vgpu-emulator.json"

    private let tree: DirectorySysfs
    private let catalog: GPUBoardCatalog
    private let lock = NSLock()
    /// Capacity of each mdev type on each parent when the GPU is empty (max_instance, or 1 on a VF).
    private var emptyCapacity: [DeviceAddress: [String: Int]] = [:]
    /// Every vendor-VF type a GPU offers when empty, by GPU: id → name.
    private var vendorTypes: [DeviceAddress: [(id: Int, name: String)]] = [:]
    /// Whether the state file is written (always before the tree's first change).
    private var stateSaved = false

    /// Reads the tree's current state as the starting point; on a tree an emulator changed
    /// before, its saved state, after settling what a killed emulator left.
    package init(root: String, catalog: GPUBoardCatalog) throws(SysfsError) {
        self.tree = DirectorySysfs(root: root)
        self.catalog = catalog
        // An emulator killed while it saved the state file leaves the file's temporary copy
        // (and no state file: the tree itself was not changed yet).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tree.root.path)) ?? []
        where AtomicFile.isTemporary(name) && name.hasPrefix(".\(Self.stateFileName)") {
            try? FileManager.default.removeItem(at: tree.root.appendingPathComponent(name))
        }
        if let state = try Self.loadState(tree) {
            for (address, capacities) in state.emptyCapacity {
                if let address = DeviceAddress(address) { emptyCapacity[address] = capacities }
            }
            for (address, types) in state.vendorTypes {
                if let address = DeviceAddress(address) { vendorTypes[address] = types.map { ($0.id, $0.name) } }
            }
            stateSaved = true
            try repair()
            try recompute()
            return
        }
        let inventory = try SysfsHostProbe(sysfs: tree, catalog: catalog).inventory()
        for gpu in inventory.gpus {
            for function in gpu.functions where function.interface == .mdev {
                guard gpu.isNVIDIA else {
                    emptyCapacity[function.address] = Self.emptyPool(function: function, vgpus: gpu.vgpus)
                    continue
                }
                var capacities: [String: Int] = [:]
                for offer in function.offers {
                    // An empty GPU shows its empty capacity; otherwise max_instance (1 per VF).
                    if gpu.sriov {
                        capacities[offer.typeID] = 1
                    } else if gpu.vgpus.isEmpty {
                        capacities[offer.typeID] = offer.availableInstances
                    } else {
                        capacities[offer.typeID] =
                            gpu.capacity(ofType: offer.typeID)?.maxInstances ?? offer.availableInstances
                    }
                }
                emptyCapacity[function.address] = capacities
            }
            if gpu.interface == .vendorVFIO {
                vendorTypes[gpu.address] = gpu.vgpuTypes.compactMap { capacity in
                    guard let id = Int(capacity.type.id), let name = capacity.type.name else { return nil }
                    return (id, name)
                }
            }
        }
    }

    package var rootDescription: String { tree.rootDescription }

    package func readFile(_ path: String) throws(SysfsError) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return try tree.readFile(path)
    }

    package func listDirectory(_ path: String) throws(SysfsError) -> [String]? {
        lock.lock()
        defer { lock.unlock() }
        return try tree.listDirectory(path)
    }

    package func readLink(_ path: String) throws(SysfsError) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return try tree.readLink(path)
    }

    package func writeFile(_ path: String, _ value: String) throws(SysfsError) {
        lock.lock()
        defer { lock.unlock() }
        if !stateSaved {
            try saveState()
            stateSaved = true
        }
        let parts = path.split(separator: "/").map(String.init)
        let value = value.trimmingXMLWhitespace()
        if parts.count == 7, parts[0...2] == ["sys", "class", "mdev_bus"], parts[4] == "mdev_supported_types",
            parts[6] == "create", let parent = DeviceAddress(parts[3])
        {
            try createMdev(uuid: value, parent: parent, type: parts[5], path: path)
        } else if parts.count == 6, parts[0...3] == ["sys", "bus", "mdev", "devices"], parts[5] == "remove" {
            try removeMdev(uuid: parts[4], value: value, path: path)
        } else if parts.count == 7, parts[0...3] == ["sys", "bus", "pci", "devices"], parts[5] == "nvidia",
            parts[6] == "current_vgpu_type", let vf = PCIAddress(parts[4])
        {
            try setVendorType(vf: vf, value: value, path: path)
        } else {
            throw error(path, EACCES)
        }
        try recompute()
    }

    // MARK: Writes

    private func createMdev(uuid text: String, parent: DeviceAddress, type: String, path: String) throws(SysfsError) {
        guard let uuid = canonicalUUID(text) else { throw error(path, EINVAL) }
        let typeDirectory = "sys/class/mdev_bus/\(parent)/mdev_supported_types/\(type)"
        guard try tree.listDirectory(typeDirectory) != nil else { throw error(path, ENOENT) }
        if try tree.readLink("sys/bus/mdev/devices/\(uuid)") != nil { throw error(path, EEXIST) }
        let available =
            Int(try tree.readFile("\(typeDirectory)/available_instances")?.trimmingXMLWhitespace() ?? "0") ?? 0
        guard available > 0 else { throw error(path, EUSERS) }
        let parentDirectory = try realDirectory(of: "sys/class/mdev_bus/\(parent)")
        let device = "\(parentDirectory)/\(uuid)"
        // Built beside its final place under a temporary name, so a half-made device never
        // carries the UUID; the bus link, last, makes it exist.
        let staging = stagingPath(of: uuid, in: parentDirectory)
        remove(staging)
        try make(directory: staging)
        try make(link: "\(staging)/mdev_type", to: "../mdev_supported_types/\(type)")
        var groups: [Int] = []
        for name in try tree.listDirectory("sys/bus/mdev/devices") ?? [] {
            if let group = try tree.readLink("sys/bus/mdev/devices/\(name)/iommu_group")?.split(separator: "/").last {
                groups.append(Int(group) ?? 0)
            }
        }
        let up = String(repeating: "../", count: device.split(separator: "/").count - 1)
        try make(link: "\(staging)/iommu_group", to: "\(up)kernel/iommu_groups/\((groups.max() ?? -1) + 1)")
        try make(file: "\(staging)/remove", contents: "")
        try move(staging, to: device)
        try make(link: "sys/bus/mdev/devices/\(uuid)", to: "../../../" + device.dropFirst("sys/".count))
    }

    private func removeMdev(uuid: String, value: String, path: String) throws(SysfsError) {
        guard let target = try tree.readLink("sys/bus/mdev/devices/\(uuid)") else { throw error(path, ENOENT) }
        guard value == "1" else { throw error(path, EINVAL) }
        guard try VGPUAllocator.holders(ofDeviceAt: "sys/bus/mdev/devices/\(uuid)", in: tree).isEmpty else {
            throw error(path, EBUSY)
        }
        let device = "sys/" + target.split(separator: "/").drop { $0 == ".." }.joined(separator: "/")
        // The bus link goes first: from then on the device is gone, whatever is left of it.
        remove("sys/bus/mdev/devices/\(uuid)")
        let leaving = stagingPath(of: uuid, in: device.split(separator: "/").dropLast().joined(separator: "/"))
        remove(leaving)
        try move(device, to: leaving)
        remove(leaving)
    }

    private func setVendorType(vf: PCIAddress, value: String, path: String) throws(SysfsError) {
        let directory = "sys/bus/pci/devices/\(vf)/nvidia"
        guard let currentText = try tree.readFile("\(directory)/current_vgpu_type") else { throw error(path, ENOENT) }
        guard let requested = Int(value), requested >= 0 else { throw error(path, EINVAL) }
        let current = Int(currentText.trimmingXMLWhitespace()) ?? 0
        if requested == 0 {
            try make(file: "\(directory)/current_vgpu_type", contents: "0\n")
            return
        }
        guard current == 0 else { throw error(path, EBUSY) }
        let creatable =
            (try? CreatableVGPUType.parseList(try tree.readFile("\(directory)/creatable_vgpu_types") ?? "")) ?? []
        guard creatable.contains(where: { $0.id == requested }) else { throw error(path, EINVAL) }
        try make(file: "\(directory)/current_vgpu_type", contents: "\(requested)\n")
    }

    // MARK: What the driver shows after a change

    private func recompute() throws(SysfsError) {
        let inventory = try SysfsHostProbe(sysfs: tree, catalog: catalog).inventory()
        for gpu in inventory.gpus {
            let sizes = { (id: String) in gpu.capacity(ofType: id)?.type.framebufferMiB }
            let usedSizes = Set(gpu.vgpus.compactMap { sizes($0.typeID) })
            let maxInstances = { (id: String) in gpu.capacity(ofType: id)?.maxInstances ?? Int.max }
            for function in gpu.functions {
                switch function.interface {
                case .mdev where !gpu.isNVIDIA:
                    let empty = emptyCapacity[function.address] ?? [:]
                    let carried = gpu.vgpus.filter { $0.function == function.address }
                    for (type, available) in Self.poolAvailability(empty: empty, carried: carried.map(\.typeID)) {
                        try make(
                            file:
                                "sys/class/mdev_bus/\(function.address)/mdev_supported_types/\(type)/available_instances",
                            contents: "\(available)\n")
                    }
                case .mdev:
                    let carried = gpu.vgpus.filter { $0.function == function.address }.count
                    for (type, empty) in emptyCapacity[function.address] ?? [:] {
                        var available: Int
                        if let other = usedSizes.first, sizes(type) != other {
                            available = 0
                        } else if gpu.sriov {
                            available = carried > 0 || gpu.vgpus.count >= maxInstances(type) ? 0 : 1
                        } else {
                            available = max(0, empty - gpu.vgpus.count)
                        }
                        try make(
                            file:
                                "sys/class/mdev_bus/\(function.address)/mdev_supported_types/\(type)/available_instances",
                            contents: "\(available)\n")
                    }
                case .vendorVFIO:
                    var listing = "ID    : vGPU Name\n"
                    if function.currentVGPUTypeID == nil {
                        for (id, name) in vendorTypes[gpu.address] ?? [] {
                            let size = VGPUProfile(typeName: name)?.framebufferMiB
                            if let other = usedSizes.first, size != other { continue }
                            if gpu.vgpus.count >= maxInstances(String(id)) { continue }
                            listing += String(id).padding(toLength: 5, withPad: " ", startingAt: 0) + " : \(name)\n"
                        }
                    }
                    try make(
                        file: "sys/bus/pci/devices/\(function.address)/nvidia/creatable_vgpu_types", contents: listing)
                }
            }
        }
    }

    /// Where mdev `uuid` is built, or taken apart, beside its place in `directory`: a name
    /// ``repair()`` knows as temporary.
    private func stagingPath(of uuid: String, in directory: String) -> String {
        "\(directory)/.\(uuid)\(AtomicFile.temporaryMarker)"
    }

    // MARK: After a kill

    /// Removes what an emulator killed mid-change left: temporary files and directories, an
    /// mdev directory without its bus link (made but not linked, or unlinked but not removed)
    /// and a bus link to no directory.
    private func repair() throws(SysfsError) {
        var directories: [String] = []
        for parent in try tree.listDirectory("sys/class/mdev_bus") ?? [] {
            let parentDirectory = try realDirectory(of: "sys/class/mdev_bus/\(parent)")
            directories.append(parentDirectory)
            let types = "sys/class/mdev_bus/\(parent)/mdev_supported_types"
            directories += (try tree.listDirectory(types) ?? []).map { "\(types)/\($0)" }
            for name in try tree.listDirectory(parentDirectory) ?? [] where canonicalUUID(name) == name {
                if try tree.readLink("sys/bus/mdev/devices/\(name)") == nil { remove("\(parentDirectory)/\(name)") }
            }
        }
        for device in try tree.listDirectory("sys/bus/pci/devices") ?? [] {
            directories.append("sys/bus/pci/devices/\(device)/nvidia")
        }
        for directory in directories {
            for name in try tree.listDirectory(directory) ?? [] where AtomicFile.isTemporary(name) {
                remove("\(directory)/\(name)")
            }
        }
        for uuid in try tree.listDirectory("sys/bus/mdev/devices") ?? []
        where (try? tree.listDirectory("sys/bus/mdev/devices/\(uuid)")) == nil {
            remove("sys/bus/mdev/devices/\(uuid)")
        }
    }

    /// What the empty devices offer, as saved before the tree's first change.
    private struct SavedState: Codable {
        struct VendorType: Codable {
            var id: Int
            var name: String
        }
        var emptyCapacity: [String: [String: Int]]
        var vendorTypes: [String: [VendorType]]
    }

    private static func loadState(_ tree: DirectorySysfs) throws(SysfsError) -> SavedState? {
        let url = tree.root.appendingPathComponent(stateFileName)
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        do {
            return try JSONDecoder().decode(SavedState.self, from: data)
        } catch {
            throw SysfsError(
                path: url.path,
                message: "is not the emulator's saved state (\(error)); remove it only with the tree it was saved with")
        }
    }

    private func saveState() throws(SysfsError) {
        let state = SavedState(
            emptyCapacity: Dictionary(uniqueKeysWithValues: emptyCapacity.map { ($0.key.description, $0.value) }),
            vendorTypes: Dictionary(
                uniqueKeysWithValues: vendorTypes.map {
                    ($0.key.description, $0.value.map { .init(id: $0.id, name: $0.name) })
                }))
        let url = url(Self.stateFileName)
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try AtomicFile.replace(url, with: try encoder.encode(state))
        } catch {
            throw SysfsError(path: url.path, message: "cannot write: \(error)")
        }
    }

    // MARK: Parents of other kinds: one shared pool

    /// Each type's count on the empty parent, from what it shows now: every device of type u
    /// takes 1/E(u) of the pool, and A(t) = E(t) × the share left, so the share left is
    /// 1 / (1 + Σ devices of u / A(u)).
    static func emptyPool(function: VGPUFunction, vgpus: [ExistingVGPU]) -> [String: Int] {
        let carried = vgpus.filter { $0.function == function.address }
        let available = Dictionary(function.offers.map { ($0.typeID, $0.availableInstances) }) { a, _ in a }
        var consumed = 0.0
        for vgpu in carried {
            guard let count = available[vgpu.typeID], count > 0 else {
                // A type that is used up says nothing of the pool: count what is there.
                return Dictionary(
                    function.offers.map { offer in
                        (offer.typeID, offer.availableInstances + carried.filter { $0.typeID == offer.typeID }.count)
                    }
                ) { a, _ in a }
            }
            consumed += 1 / Double(count)
        }
        let left = 1 / (1 + consumed)
        return available.mapValues { Int((Double($0) / left).rounded()) }
    }

    /// What each type can still make when devices of `carried` types exist.
    static func poolAvailability(empty: [String: Int], carried: [String]) -> [String: Int] {
        func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
        let units = empty.values.filter { $0 > 0 }.reduce(1) { $0 / gcd($0, $1) * $1 }
        let used = carried.reduce(0) { sum, type in sum + (empty[type].map { $0 > 0 ? units / $0 : units } ?? 0) }
        return empty.mapValues { count in count > 0 ? max(0, units - used) / (units / count) : 0 }
    }

    // MARK: Files

    /// The directory a sysfs link points at, relative to the root (or the path itself).
    private func realDirectory(of path: String) throws(SysfsError) -> String {
        guard let target = try tree.readLink(path) else { return path }
        var components = path.split(separator: "/").dropLast().map(String.init)
        for part in target.split(separator: "/") {
            if part == ".." { components.removeLast() } else { components.append(String(part)) }
        }
        return components.joined(separator: "/")
    }

    private func url(_ path: String) -> URL { tree.root.appendingPathComponent(path) }

    private func make(directory path: String) throws(SysfsError) {
        do {
            try FileManager.default.createDirectory(at: url(path), withIntermediateDirectories: true)
        } catch {
            throw SysfsError(path: url(path).path, message: "cannot create: \(error.localizedDescription)")
        }
    }

    /// Replaces the file whole, when its content changes.
    private func make(file path: String, contents: String) throws(SysfsError) {
        if (try? tree.readFile(path)) == contents { return }
        do {
            try AtomicFile.replace(url(path), with: contents.utf8)
        } catch {
            throw SysfsError(path: url(path).path, message: "cannot write: \(error)")
        }
    }

    private func move(_ path: String, to destination: String) throws(SysfsError) {
        guard rename(url(path).path, url(destination).path) == 0 else {
            throw SysfsError(path: url(path).path, message: "cannot rename: \(String(cString: strerror(errno)))")
        }
    }

    private func make(link path: String, to target: some StringProtocol) throws(SysfsError) {
        do {
            try FileManager.default.createDirectory(
                at: url(path).deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: url(path).path, withDestinationPath: String(target))
        } catch {
            throw SysfsError(path: url(path).path, message: "cannot link: \(error.localizedDescription)")
        }
    }

    private func remove(_ path: String) {
        try? FileManager.default.removeItem(at: url(path))
    }

    private func error(_ path: String, _ code: Int32) -> SysfsError {
        SysfsError(path: url(path).path, message: "write refused: \(String(cString: strerror(code)))")
    }
}
