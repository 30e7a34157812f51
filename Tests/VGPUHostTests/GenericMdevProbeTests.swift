import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUHost

@Suite("Sysfs host probe on mediated devices that are not NVIDIA GPUs")
struct GenericMdevProbeTests {
    @Test("the real mtty capture: a virtual parent named mtty, two types whose capacity is the kernel's")
    func mttyCapture() throws {
        let host = try fixtureHost("mtty")
        #expect(host.kernelRelease == "6.12.118+deb12-amd64")
        #expect(host.nvidiaDriverVersion == nil)
        // No NVIDIA device: no warning about a missing NVIDIA driver, no board table note.
        #expect(host.diagnostics.isEmpty, "\(host.diagnostics)")
        let parent = try #require(host.gpus.only)
        #expect(parent.address == .named("mtty"))
        #expect(parent.pci == nil && parent.board == nil)
        #expect(!parent.isNVIDIA)
        #expect(parent.interface == .mdev && !parent.sriov)
        let single = try #require(parent.capacity(ofType: "mtty-1"))
        let dual = try #require(parent.capacity(ofType: "mtty-2"))
        #expect(
            (single.type.name, single.type.deviceAPI, single.free, single.used) == (
                "Single port serial", "vfio-pci", 22, 0
            ))
        #expect((dual.type.name, dual.free, dual.used) == ("Dual port serial", 11, 1))
        // NVIDIA's per-GPU limits and homogeneity do not apply.
        #expect(single.maxInstances == nil && dual.maxInstances == nil)
        #expect(single.type.framebufferMiB == nil)
        let mdev = try #require(parent.vgpus.only)
        #expect(mdev.id == "3b0a18e6-f67a-4c67-b818-8ef8b8a31ece")
        #expect(mdev.function == .named("mtty") && mdev.typeID == "mtty-2" && mdev.typeName == "Dual port serial")
        #expect(mdev.hostdevSource == .mdev(uuid: "3b0a18e6-f67a-4c67-b818-8ef8b8a31ece"))
    }

    @Test("an Intel GVT-g iGPU: a PCI parent of another vendor, its own description format is no error")
    func intelGVTg() throws {
        let host = try fixtureHost("gvt-g")
        #expect(host.diagnostics.isEmpty, "\(host.diagnostics)")
        let parent = try #require(host.gpus.only)
        #expect(parent.address == DeviceAddress("0000:00:02.0"))
        #expect(parent.pci?.vendor == 0x8086 && parent.board == nil && !parent.isNVIDIA)
        #expect(parent.capacity(ofType: "i915-GVTg_V5_4")?.free == 3)
        #expect(parent.capacity(ofType: "i915-GVTg_V5_8")?.free == 7)
        #expect(parent.capacity(ofType: "i915-GVTg_V5_8")?.used == 1)
        #expect(parent.vgpus.map(\.typeID) == ["i915-GVTg_V5_8"])
    }

    @Test("an NVIDIA parent's description that is not key=value pairs is still an error naming the file")
    func nvidiaDescriptionStillChecked() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let file = tree.appendingPathComponent(
                "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/mdev_supported_types/nvidia-232/description")
            try "low_gm_size: 128MB\n".write(to: file, atomically: true, encoding: .utf8)
            #expect {
                try probe(tree.path)
            } throws: { error in
                (error as? SysfsError).map { $0.path.hasSuffix("nvidia-232/description") } == true
            }
        }
    }

    @Test("a parent name that cannot be a path component is skipped with a warning, not followed")
    func unsafeParentName() async throws {
        try await TestData.withFixtureCopy("mtty-empty") { tree in
            let bus = tree.appendingPathComponent("sys/class/mdev_bus")
            try FileManager.default.createDirectory(
                at: bus.appendingPathComponent("bad name"), withIntermediateDirectories: true)
            let host = try probe(tree.path)
            #expect(host.gpus.map(\.address) == [.named("mtty")])
            #expect(host.diagnostics.contains { $0.severity == .warning && $0.message.contains("'bad name'") })
        }
    }
}
