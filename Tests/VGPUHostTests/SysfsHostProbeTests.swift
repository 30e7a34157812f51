import Foundation
import Testing
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUHost

func boardCatalog() throws -> GPUBoardCatalog {
    let url = TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)
    return try GPUBoardCatalogFile.parse(try TestData.text(url), file: url.path)
}

func probe(_ root: String) throws -> HostInventory {
    try SysfsHostProbe(sysfs: DirectorySysfs(root: root), catalog: try boardCatalog()).inventory()
}

func fixtureHost(_ name: String) throws -> HostInventory {
    try probe(TestData.fixtures.appendingPathComponent("hosts/\(name)").path)
}

@Suite("Sysfs host probe on the fixture hosts")
struct SysfsHostProbeFixtureTests {
    @Test("T4 with one T4-4Q: 3 more 4 GB vGPUs fit, other sizes are blocked")
    func t4WithOneVGPU() throws {
        let host = try fixtureHost("t4-a")
        #expect(host.kernelRelease == "6.8.0-45-generic")
        #expect(host.nvidiaDriverVersion == "550.90.05")
        #expect(host.hostname == "gpu-t4-a")
        #expect(host.diagnostics.isEmpty, "\(host.diagnostics)")
        let gpu = try #require(host.gpus.only)
        #expect(gpu.address == DeviceAddress("0000:3b:00.0"))
        #expect(gpu.board?.name == "T4")
        #expect(gpu.board?.architecture.dirtyPageTracking == false)
        #expect(gpu.interface == .mdev)
        #expect(!gpu.sriov)
        #expect(gpu.vgpuTypes.count == 17)
        let q4 = try #require(gpu.capacity(ofType: "nvidia-232"))
        #expect((q4.type.name, q4.free, q4.used, q4.maxInstances) == ("GRID T4-4Q", 3, 1, 4))
        #expect(q4.type.framebufferMiB == 4096)
        #expect(gpu.capacity(ofType: "nvidia-319")?.free == 3)
        let q8 = try #require(gpu.capacity(ofType: "nvidia-233"))
        #expect(q8.free == 0)
        #expect(q8.blockedBy?.hasPrefix("homogeneity") == true)
        #expect(
            gpu.vgpus == [
                ExistingVGPU(
                    id: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", interface: .mdev, typeID: "nvidia-232",
                    typeName: "GRID T4-4Q", function: DeviceAddress("0000:3b:00.0")!)
            ])
    }

    @Test("an empty T4 offers every type up to its max_instance")
    func emptyT4() throws {
        let gpu = try #require(try fixtureHost("t4-b").gpus.only)
        #expect(gpu.vgpus.isEmpty)
        #expect(gpu.capacity(ofType: "nvidia-230")?.free == 16)
        #expect(gpu.capacity(ofType: "nvidia-234")?.free == 1)
        #expect(gpu.vgpuTypes.allSatisfy { $0.free == $0.maxInstances && $0.used == 0 })
    }

    @Test("a full T4 has no room left")
    func fullT4() throws {
        let gpu = try #require(try fixtureHost("t4-full").gpus.only)
        #expect(gpu.vgpus.count == 4)
        let q4 = try #require(gpu.capacity(ofType: "nvidia-232"))
        #expect((q4.free, q4.used) == (0, 4))
        #expect(gpu.vgpuTypes.allSatisfy { $0.free == 0 })
    }

    @Test("A100 40GB: 16 VFs grouped under the PF, one A100-20C leaves room for one more")
    func a100() throws {
        let host = try fixtureHost("a100-40gb")
        let gpu = try #require(host.gpus.only)
        #expect(gpu.address == DeviceAddress("0000:ca:00.0"))
        #expect(gpu.sriov)
        #expect(gpu.physicalFunctionVisible)
        #expect(gpu.functions.count == 16)
        #expect(gpu.functions.allSatisfy { $0.physicalFunction == PCIAddress("0000:ca:00.0") })
        #expect(gpu.board?.name == "A100-40GB")
        #expect(
            gpu.pci == PCIIdentity(vendor: 0x10de, device: 0x20f1, subsystemVendor: 0x10de, subsystemDevice: 0x145f))
        #expect(
            gpu.vgpuTypes.map(\.type.id) == [
                "nvidia-468", "nvidia-469", "nvidia-470", "nvidia-471", "nvidia-472", "nvidia-473",
            ])
        let c20 = try #require(gpu.capacity(ofType: "nvidia-472"))
        #expect((c20.free, c20.used, c20.maxInstances) == (1, 1, 2))
        #expect(gpu.capacity(ofType: "nvidia-471")?.free == 0)
        #expect(gpu.vgpus.map(\.function) == [DeviceAddress("0000:ca:00.4")!])
    }

    @Test("L40S with vendor-specific VFs: two L40S-8Q in use, four more fit")
    func l40s() throws {
        let gpu = try #require(try fixtureHost("l40s").gpus.only)
        #expect(gpu.interface == .vendorVFIO)
        #expect(gpu.board?.name == "L40S")
        #expect(gpu.board?.architecture.dirtyPageTracking == true)
        #expect(gpu.functions.count == 32)
        let q8 = try #require(gpu.capacity(ofType: "1152"))
        #expect((q8.type.name, q8.free, q8.used, q8.maxInstances) == ("NVIDIA L40S-8Q", 4, 2, 6))
        #expect(gpu.vgpus.map(\.id) == ["0000:41:00.4", "0000:41:00.5"])
        #expect(gpu.vgpus.allSatisfy { $0.typeName == "NVIDIA L40S-8Q" && $0.interface == .vendorVFIO })
        #expect(gpu.vgpus.first?.hostdevSource == .pci(PCIAddress("0000:41:00.4")!))
    }

    @Test("H100 PCIe: driver read from /proc, one H100-40C leaves one")
    func h100() throws {
        let host = try fixtureHost("h100-pcie")
        #expect(host.nvidiaDriverVersion == "550.90.05")
        let gpu = try #require(host.gpus.only)
        #expect(gpu.board?.name == "H100-PCIe")
        let c40 = try #require(gpu.capacity(ofType: "1306"))
        #expect((c40.free, c40.used, c40.maxInstances) == (1, 1, 2))
        #expect(gpu.capacity(ofType: "1307") == nil)
    }

    @Test("the real harvester capture: A2 VF with 15 mdev types, L40S VF with 23 creatable types")
    func harvesterCapture() throws {
        let host = try fixtureHost("harvester-a2-l40s")
        #expect(host.gpus.count == 2)
        let a2 = try #require(host.gpu(containing: DeviceAddress("0000:08:01.7")!))
        #expect(a2.vgpuTypes.count == 15)
        #expect(a2.board?.name == "A2")
        #expect(a2.interface == .mdev)
        let available = a2.vgpuTypes.filter { $0.free > 0 }.map(\.type.id)
        #expect(available == ["nvidia-746", "nvidia-751", "nvidia-754"])
        #expect(a2.capacity(ofType: "nvidia-748")?.maxInstances == 1)
        #expect(a2.capacity(ofType: "nvidia-742")?.type.framebufferMiB == 1024)
        let l40s = try #require(host.gpu(containing: DeviceAddress("0000:26:00.4")!))
        #expect(l40s.interface == .vendorVFIO)
        #expect(l40s.vgpuTypes.count == 23)
        #expect(l40s.board?.name == "L40S")
        #expect(l40s.vgpuTypes.allSatisfy { $0.free == 1 && $0.used == 0 })
        #expect(host.nvidiaDriverVersion == nil)
        #expect(host.kernelRelease == nil)
        #expect(host.diagnostics.filter { $0.severity == .warning }.count == 2)
    }
}

@Suite("Sysfs host probe on broken trees")
struct SysfsHostProbeErrorTests {
    /// A copy of fixture `name` in a fresh temporary directory, removed after `body`.
    func withCopy(of name: String, _ body: (URL) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-probe-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let copy = directory.appendingPathComponent(name)
        try FileManager.default.copyItem(at: TestData.fixtures.appendingPathComponent("hosts/\(name)"), to: copy)
        try body(copy)
    }

    func expectError(_ root: URL, file: String, fragment: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            _ = try probe(root.path)
        } throws: { error in
            guard let error = error as? SysfsError else { return false }
            return error.path == root.appendingPathComponent(file).path && error.message.contains(fragment)
        }
    }

    static let t4Type = "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/mdev_supported_types/nvidia-232"

    @Test(
        "garbage in a file is an error naming the file",
        arguments: [
            ("\(t4Type)/available_instances", "many\n", "non-negative whole number, found 'many'"),
            ("\(t4Type)/available_instances", "-1\n", "found '-1'"),
            ("\(t4Type)/description", "framebuffer=lots\n", "framebuffer 'lots'"),
            ("\(t4Type)/description", "max_instance=4, nonsense\n", "not a key=value pair"),
            ("sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/vendor", "nvidia\n", "expected a PCI id"),
            ("sys/module/nvidia/version", "latest\n", "expected a driver version"),
            ("proc/sys/kernel/osrelease", "\n", "is empty"),
        ])
    func garbageFile(file: String, content: String, fragment: String) throws {
        try withCopy(of: "t4-a") { root in
            try content.write(to: root.appendingPathComponent(file), atomically: true, encoding: .utf8)
            expectError(root, file: Self.asReported(file), fragment: fragment)
        }
    }

    /// The probe names a parent's files by the path it reads them through.
    static func asReported(_ file: String) -> String {
        file.replacingOccurrences(
            of: "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0", with: "sys/class/mdev_bus/0000:3b:00.0")
    }

    @Test("a missing available_instances is an error naming the file")
    func missingAvailableInstances() throws {
        try withCopy(of: "t4-a") { root in
            let file = "\(Self.t4Type)/available_instances"
            try FileManager.default.removeItem(at: root.appendingPathComponent(file))
            expectError(root, file: Self.asReported(file), fragment: "missing")
        }
    }

    @Test("an mdev without its mdev_type link is an error naming the link")
    func missingMdevType() throws {
        try withCopy(of: "t4-a") { root in
            let file = "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10/mdev_type"
            try FileManager.default.removeItem(at: root.appendingPathComponent(file))
            expectError(
                root, file: "sys/bus/mdev/devices/5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10/mdev_type", fragment: "missing")
        }
    }

    @Test("vendor VF files with garbage are errors naming the file")
    func garbageVendorFiles() throws {
        let vf = "sys/devices/pci0000:9a/0000:9a:01.0/0000:9b:00.5/nvidia"
        try withCopy(of: "h100-pcie") { root in
            try "abc\n".write(
                to: root.appendingPathComponent("\(vf)/current_vgpu_type"), atomically: true, encoding: .utf8)
            expectError(
                root, file: "sys/bus/pci/devices/0000:9b:00.5/nvidia/current_vgpu_type", fragment: "found 'abc'")
        }
        try withCopy(of: "h100-pcie") { root in
            try "ID    : vGPU Name\nfoo : NVIDIA H100-4C\n".write(
                to: root.appendingPathComponent("\(vf)/creatable_vgpu_types"), atomically: true, encoding: .utf8)
            expectError(root, file: "sys/bus/pci/devices/0000:9b:00.5/nvidia/creatable_vgpu_types", fragment: "line 2")
        }
    }

    @Test("a binary file where text is expected is an error naming the file")
    func binaryFile() throws {
        try withCopy(of: "t4-a") { root in
            let file = "\(Self.t4Type)/name"
            try Data([0xFF, 0xFE, 0x00, 0x80]).write(to: root.appendingPathComponent(file))
            expectError(root, file: Self.asReported(file), fragment: "not text")
        }
    }

    @Test("an empty tree has no GPUs and says why")
    func emptyTree() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-empty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let host = try probe(directory.path)
        #expect(host.gpus.isEmpty)
        #expect(host.diagnostics.map(\.severity) == [.warning, .warning, .warning])
        #expect(host.diagnostics[0].message.contains("no vGPU-capable device"))
    }
}

extension Array {
    /// The single element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
