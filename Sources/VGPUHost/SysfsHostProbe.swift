import VGPUMigrationCore

/// Reads a host's vGPU facts from sysfs and procfs through ``SysfsIO``.
///
/// - mdev: parents under `sys/class/mdev_bus` (PCI functions, or parents of other kinds named
///   as the kernel lists them, such as the sample driver mtty's `mtty`), their
///   `mdev_supported_types`, and the mdevs under `sys/bus/mdev/devices` (parent and `mdev_type`
///   from their links);
/// - NVIDIA vendor-specific VFIO: `sys/bus/pci/devices/<VF>/nvidia/{creatable_vgpu_types,current_vgpu_type}`;
/// - SR-IOV: a function's `physfn` link names its physical GPU;
/// - driver: `sys/module/nvidia/version`, else the `NVRM version:` line of
///   `proc/driver/nvidia/version`; kernel: `proc/sys/kernel/osrelease`.
///
/// A file that is missing where the kernel always writes it, or that holds something the
/// kernel never writes, is a ``SysfsError`` naming the file.
package struct SysfsHostProbe: Sendable {
    package var sysfs: any SysfsIO
    package var catalog: GPUBoardCatalog

    package init(sysfs: any SysfsIO, catalog: GPUBoardCatalog) {
        self.sysfs = sysfs
        self.catalog = catalog
    }

    static let mdevBus = "sys/class/mdev_bus"
    static let mdevDevices = "sys/bus/mdev/devices"
    static let pciDevices = "sys/bus/pci/devices"

    package func inventory() throws(SysfsError) -> HostInventory {
        var diagnostics: [Diagnostic] = []
        var functions: [ObservedFunction] = []
        var vgpus: [ExistingVGPU] = []

        let parents = try sysfs.listDirectory(Self.mdevBus) ?? []
        for name in parents {
            guard let address = DeviceAddress(name) else {
                diagnostics.append(
                    Diagnostic(
                        .warning, "mdev parent '\(name)' has a name this tool does not use in a path; it is skipped",
                        remedy: "report the driver that makes it"))
                continue
            }
            functions.append(try mdevParent(address, directory: "\(Self.mdevBus)/\(name)"))
        }
        let mdevParents = Set(functions.map(\.address))

        for name in try sysfs.listDirectory(Self.pciDevices) ?? [] {
            guard let address = PCIAddress(name), !mdevParents.contains(.pci(address)) else { continue }
            let directory = "\(Self.pciDevices)/\(name)"
            guard let entries = try sysfs.listDirectory("\(directory)/nvidia"),
                entries.contains("creatable_vgpu_types") || entries.contains("current_vgpu_type")
            else { continue }
            let (function, vgpu) = try vendorFunction(address, directory: directory)
            functions.append(function)
            if let vgpu { vgpus.append(vgpu) }
        }

        for name in try sysfs.listDirectory(Self.mdevDevices) ?? [] {
            vgpus.append(try mdevDevice(name, knownParents: mdevParents))
        }

        var physicalFunctionIDs: [PCIAddress: PCIIdentity] = [:]
        for pf in Set(functions.compactMap(\.physicalFunction)) {
            let directory = "\(Self.pciDevices)/\(pf)"
            if let ids = try pciIdentity(directory: directory) { physicalFunctionIDs[pf] = ids }
        }

        let built = HostInventoryBuilder.physicalGPUs(
            functions: functions, vgpus: vgpus, physicalFunctionIDs: physicalFunctionIDs, catalog: catalog)
        diagnostics += built.diagnostics
        if built.gpus.isEmpty {
            diagnostics.append(
                Diagnostic(
                    .warning, "no vGPU-capable device found: \(Self.mdevBus) and NVIDIA VF files are absent",
                    remedy: "load the NVIDIA vGPU host driver, enable SR-IOV on the GPUs (sriov-manage -e ALL), "
                        + "or point --sysfs-root at a captured tree"))
        }

        let kernel = try optionalLine("proc/sys/kernel/osrelease")
        if kernel == nil {
            diagnostics.append(
                Diagnostic(
                    .warning, "kernel release unknown: \(path("proc/sys/kernel/osrelease")) is missing",
                    remedy: "the pre-flight check compares it with the 5.18.0 minimum"))
        }
        let driver = try driverVersion()
        if driver == nil && HostInventory.expectsNVIDIADriver(built.gpus) {
            diagnostics.append(
                Diagnostic(
                    .warning,
                    "NVIDIA host driver version unknown: neither \(path("sys/module/nvidia/version")) nor "
                        + "\(path("proc/driver/nvidia/version")) exists",
                    remedy: "load the NVIDIA vGPU host driver; both hosts of a migration must run the same version"))
        }

        return HostInventory(
            source: InventorySource(kind: .sysfs, location: sysfs.rootDescription),
            hostname: try optionalLine("proc/sys/kernel/hostname"), kernelRelease: kernel,
            nvidiaDriverVersion: driver, gpus: built.gpus, diagnostics: diagnostics)
    }

    // MARK: mdev

    private func mdevParent(_ address: DeviceAddress, directory: String) throws(SysfsError) -> ObservedFunction {
        var types: [(info: VGPUTypeInfo, available: Int)] = []
        let typesDirectory = "\(directory)/mdev_supported_types"
        let pci = try pciIdentity(directory: directory)
        for typeID in try sysfs.listDirectory(typesDirectory) ?? [] {
            let typeDirectory = "\(typesDirectory)/\(typeID)"
            let available = try requiredCount("\(typeDirectory)/available_instances")
            let name = try optionalLine("\(typeDirectory)/name")
            let deviceAPI = try optionalLine("\(typeDirectory)/device_api")
            var description: MdevTypeDescription?
            if let text = try sysfs.readFile("\(typeDirectory)/description") {
                do {
                    description = try MdevTypeDescription(parsing: text)
                } catch {
                    // NVIDIA's driver always writes key=value pairs; other drivers write
                    // descriptions of their own (or none), which carry nothing this tool uses.
                    if PhysicalGPU.isNVIDIA(pci: pci, board: nil, interface: .mdev, typeIDs: [typeID]) {
                        throw SysfsError(path: path("\(typeDirectory)/description"), message: error.message)
                    }
                }
            }
            types.append(
                (VGPUTypeInfo(id: typeID, name: name, description: description, deviceAPI: deviceAPI), available))
        }
        return ObservedFunction(
            address: address, pci: pci, physicalFunction: try physicalFunction(directory: directory), interface: .mdev,
            types: types)
    }

    private func mdevDevice(_ name: String, knownParents: Set<DeviceAddress>) throws(SysfsError) -> ExistingVGPU {
        let directory = "\(Self.mdevDevices)/\(name)"
        guard let uuid = canonicalUUID(name) else {
            throw SysfsError(path: path(directory), message: "an mdev device must be named by its UUID")
        }
        // The device entry links into its parent's directory: .../<parent>/<uuid>.
        var parent: DeviceAddress?
        if let target = try sysfs.readLink(directory) {
            let components = target.split(separator: "/")
            if components.count >= 2 { parent = DeviceAddress(components[components.count - 2]) }
            if parent == nil {
                throw SysfsError(
                    path: path(directory),
                    message: "links to '\(target)', whose parent is neither a PCI device nor a named mdev parent")
            }
        } else {
            for candidate in knownParents.sorted() {
                if try sysfs.listDirectory("\(Self.mdevBus)/\(candidate)")?.contains(name) == true {
                    parent = candidate
                    break
                }
            }
        }
        guard let parent else {
            throw SysfsError(path: path(directory), message: "the parent device of this mdev cannot be found")
        }
        guard let typeLink = try sysfs.readLink("\(directory)/mdev_type"),
            let typeID = typeLink.split(separator: "/").last
        else {
            throw SysfsError(path: path("\(directory)/mdev_type"), message: "missing; every mdev links to its type")
        }
        return ExistingVGPU(id: uuid, interface: .mdev, typeID: String(typeID), typeName: nil, function: parent)
    }

    // MARK: NVIDIA vendor-specific VFIO

    private func vendorFunction(_ address: PCIAddress, directory: String) throws(SysfsError) -> (
        ObservedFunction, ExistingVGPU?
    ) {
        let currentFile = "\(directory)/nvidia/current_vgpu_type"
        let current = try sysfs.readFile(currentFile).map { (text) throws(SysfsError) in
            try count(text, file: currentFile)
        }
        let currentID = current.flatMap { $0 == 0 ? nil : String($0) }
        var types: [(info: VGPUTypeInfo, available: Int)] = []
        let listFile = "\(directory)/nvidia/creatable_vgpu_types"
        if let text = try sysfs.readFile(listFile) {
            let listed: [CreatableVGPUType]
            do {
                listed = try CreatableVGPUType.parseList(text)
            } catch {
                throw SysfsError(path: path(listFile), message: error.description)
            }
            types = listed.map { (VGPUTypeInfo(id: String($0.id), name: $0.name), currentID == nil ? 1 : 0) }
        }
        let function = ObservedFunction(
            address: .pci(address), pci: try pciIdentity(directory: directory),
            physicalFunction: try physicalFunction(directory: directory), interface: .vendorVFIO, types: types,
            currentVGPUTypeID: currentID)
        let vgpu = currentID.map {
            ExistingVGPU(
                id: address.description, interface: .vendorVFIO, typeID: $0, typeName: nil, function: .pci(address))
        }
        return (function, vgpu)
    }

    // MARK: PCI attributes

    private func physicalFunction(directory: String) throws(SysfsError) -> PCIAddress? {
        guard let target = try sysfs.readLink("\(directory)/physfn") else { return nil }
        guard let last = target.split(separator: "/").last, let address = PCIAddress(last) else {
            throw SysfsError(
                path: path("\(directory)/physfn"), message: "links to '\(target)', which is not a PCI device")
        }
        return address
    }

    private func pciIdentity(directory: String) throws(SysfsError) -> PCIIdentity? {
        func id(_ file: String) throws(SysfsError) -> UInt16? {
            let relative = "\(directory)/\(file)"
            guard let text = try sysfs.readFile(relative) else { return nil }
            let trimmed = text.trimmingXMLWhitespace()
            guard trimmed.hasPrefix("0x"), let value = parsePCIIDNumber(trimmed) else {
                throw SysfsError(path: path(relative), message: "expected a PCI id such as 0x10de, found '\(trimmed)'")
            }
            return value
        }
        guard let vendor = try id("vendor"), let device = try id("device") else { return nil }
        return PCIIdentity(
            vendor: vendor, device: device, subsystemVendor: try id("subsystem_vendor"),
            subsystemDevice: try id("subsystem_device"))
    }

    // MARK: Versions

    private func driverVersion() throws(SysfsError) -> String? {
        if let version = try optionalLine("sys/module/nvidia/version") {
            guard isDriverVersion(version) else {
                throw SysfsError(
                    path: path("sys/module/nvidia/version"),
                    message: "expected a driver version such as 550.90.05, found '\(version)'")
            }
            return version
        }
        let procFile = "proc/driver/nvidia/version"
        guard let text = try sysfs.readFile(procFile) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("NVRM version:") {
            if let version = line.split(separator: " ").map(String.init).first(where: isDriverVersion) {
                return version
            }
        }
        throw SysfsError(path: path(procFile), message: "has no 'NVRM version:' line with a driver version")
    }

    private func isDriverVersion(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return (2...4).contains(parts.count) && parts.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isASCIIDigit) }
    }

    // MARK: Reading values

    private func path(_ relative: String) -> String {
        sysfs.rootDescription.hasSuffix("/") ? sysfs.rootDescription + relative : sysfs.rootDescription + "/" + relative
    }

    /// First line of a file, trimmed; nil when the file does not exist; an error when it is empty.
    private func optionalLine(_ relative: String) throws(SysfsError) -> String? {
        guard let text = try sysfs.readFile(relative) else { return nil }
        let line = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
            .trimmingXMLWhitespace()
        guard !line.isEmpty else { throw SysfsError(path: path(relative), message: "is empty") }
        return line
    }

    private func requiredCount(_ relative: String) throws(SysfsError) -> Int {
        guard let text = try sysfs.readFile(relative) else {
            throw SysfsError(path: path(relative), message: "missing; the kernel writes it for every mdev type")
        }
        return try count(text, file: relative)
    }

    private func count(_ text: String, file relative: String) throws(SysfsError) -> Int {
        let trimmed = text.trimmingXMLWhitespace()
        guard !trimmed.isEmpty, trimmed.count <= 9, trimmed.allSatisfy(\.isASCIIDigit), let value = Int(trimmed) else {
            throw SysfsError(path: path(relative), message: "expected a non-negative whole number, found '\(trimmed)'")
        }
        return value
    }
}
