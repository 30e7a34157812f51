import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUHost

@Suite("Mediated devices that are not NVIDIA GPUs: emulator, allocator and agent")
struct GenericMdevAllocationTests {
    static let types = "sys/class/mdev_bus/mtty/mdev_supported_types"

    func available(_ sysfs: SysfsEmulator, _ type: String) throws -> String? {
        try sysfs.readFile("\(Self.types)/\(type)/available_instances")
    }

    @Test("mtty's types share 24 ports, as the kernel counts them, from the real capture's state")
    func mttyPortsAreShared() async throws {
        try await TestData.withFixtureCopy("mtty") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            // The capture: one dual-port device, 22 single / 11 dual left.
            #expect(try available(sysfs, "mtty-1") == "22\n")
            let single = "5d0e6a4b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
            try sysfs.writeFile("\(Self.types)/mtty-1/create", single)
            #expect(try (available(sysfs, "mtty-1"), available(sysfs, "mtty-2")) == ("21\n", "10\n"))
            try sysfs.writeFile("\(Self.types)/mtty-2/create", "5d0e6a4b-1c2d-4e3f-8a9b-0c1d2e3f4a5c")
            #expect(try (available(sysfs, "mtty-1"), available(sysfs, "mtty-2")) == ("19\n", "9\n"))
            try sysfs.writeFile("sys/bus/mdev/devices/3b0a18e6-f67a-4c67-b818-8ef8b8a31ece/remove", "1")
            #expect(try (available(sysfs, "mtty-1"), available(sysfs, "mtty-2")) == ("21\n", "10\n"))
            let host = try SysfsHostProbe(sysfs: sysfs, catalog: try catalog()).inventory()
            #expect(Set(host.vgpus.map(\.id)) == [single, "5d0e6a4b-1c2d-4e3f-8a9b-0c1d2e3f4a5c"])
        }
    }

    @Test("an exhausted mtty refuses one more device the way the kernel does")
    func mttyExhausted() async throws {
        try await TestData.withFixtureCopy("mtty-empty") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            for index in 0..<12 {
                try sysfs.writeFile(
                    "\(Self.types)/mtty-2/create", String(format: "6e1f7b5c-2d3e-4f40-9b1c-%012x", index))
            }
            #expect(try (available(sysfs, "mtty-1"), available(sysfs, "mtty-2")) == ("0\n", "0\n"))
            refused("Too many users") {
                try sysfs.writeFile("\(Self.types)/mtty-1/create", "6e1f7b5c-2d3e-4f40-9b1c-0000000000ff")
            }
        }
    }

    @Test("the allocator plans mtty devices on the parent named mtty, with new UUIDs, and creates them")
    func allocatorOnMtty() async throws {
        try await TestData.withFixtureCopy("mtty-empty") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let allocator = VGPUAllocator(sysfs: sysfs, catalog: try catalog())
            let planned = try allocator.plan(typeID: "mtty-2", count: 2)
            #expect(planned.count == 2 && Set(planned.map(\.id)).count == 2)
            #expect(
                planned.allSatisfy {
                    $0.function == .named("mtty") && $0.gpu == .named("mtty") && $0.interface == .mdev
                })
            for device in planned { try allocator.create(device) }
            #expect(try planned.allSatisfy { try allocator.exists($0) })
            #expect(try available(sysfs, "mtty-2") == "10\n")
            #expect(throws: AllocationError.self) { try allocator.plan(typeID: "mtty-2", count: 11) }
            for device in planned { try allocator.remove(device) }
            #expect(try available(sysfs, "mtty-2") == "12\n")
        }
    }

    @Test("a real agent reserves, commits and releases mtty devices over HTTP")
    func agentOnMtty() async throws {
        let agent = try AgentUnderTest(fixture: "mtty-empty")
        let client = agent.client()
        let facts = try await client.facts()
        #expect(facts.gpus.map(\.address) == [.named("mtty")])
        #expect(facts.nvidiaDriverVersion == nil && facts.diagnostics.isEmpty)
        let reservation = try await client.reserve(request("mtty-2", count: 1))
        let device = try #require(reservation.devices.only)
        #expect(device.function == .named("mtty") && agent.mdevExists(device.id))
        #expect(try await client.facts().gpus.first?.capacity(ofType: "mtty-1")?.free == 22)
        #expect(try await client.commit(reservation.id).state == .committed)
        #expect(try await client.retire(reservation.id).state == .released)
        #expect(!agent.mdevExists(device.id))
        #expect(try await client.facts().gpus.first?.capacity(ofType: "mtty-1")?.free == 24)
    }
}

@Suite("A vGPU a process holds open is never removed under it (real agent over an mtty tree)")
struct HeldDeviceTests {
    /// Makes process `pid` (`qemu-system-x86`) hold mdev `uuid` of `agent`'s tree open, as
    /// `proc/PID/fd/N → /dev/vfio/GROUP` shows it on a host.
    func hold(_ uuid: String, by pid: Int, in agent: AgentUnderTest) throws -> URL {
        let link = try FileManager.default.destinationOfSymbolicLink(
            atPath: agent.tree.appendingPathComponent("sys/bus/mdev/devices/\(uuid)/iommu_group").path)
        return try hold(group: String(try #require(link.split(separator: "/").last)), by: pid, in: agent)
    }

    /// The same by IOMMU group (the emulator gives the first mdev on an empty tree group 0).
    func hold(group: String, by pid: Int, in agent: AgentUnderTest) throws -> URL {
        let process = agent.tree.appendingPathComponent("proc/\(pid)")
        try FileManager.default.createDirectory(
            at: process.appendingPathComponent("fd"), withIntermediateDirectories: true)
        try "qemu-system-x86\n".write(to: process.appendingPathComponent("comm"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(
            atPath: process.appendingPathComponent("fd/9").path, withDestinationPath: "/dev/vfio/\(group)")
        return process
    }

    @Test("released while held: releasing, naming the process; removed by the agent once the process lets go")
    func releaseWhileHeld() async throws {
        let agent = try AgentUnderTest(fixture: "mtty-empty")
        let client = agent.client()
        let reservation = try await client.reserve(request("mtty-2"))
        let uuid = try #require(reservation.devices.only).id
        let process = try hold(uuid, by: 4242, in: agent)
        let releasing = try await client.release(reservation.id)
        #expect(releasing.state == .releasing)
        #expect(releasing.reason?.contains("\(uuid) is held open by process 4242 (qemu-system-x86)") == true)
        #expect(agent.mdevExists(uuid))
        await #expect(throws: AgentClientError.self) { try await client.commit(reservation.id) }
        try FileManager.default.removeItem(at: process)
        #expect(await eventually { (try? await client.reservation(reservation.id).state) == .released })
        #expect(!agent.mdevExists(uuid))
    }

    @Test("a lease that ends while a process holds the device keeps it, until the process lets go")
    func leaseEndsWhileHeld() async throws {
        let agent = try AgentUnderTest(fixture: "mtty-empty")
        let client = agent.client()
        // Held from the start: the 1 s lease cannot end before the process holds it.
        let process = try hold(group: "0", by: 5150, in: agent)
        let reservation = try await client.reserve(request("mtty-1", lease: 1))
        let uuid = try #require(reservation.devices.only).id
        #expect(
            try FileManager.default.destinationOfSymbolicLink(
                atPath: agent.tree.appendingPathComponent("sys/bus/mdev/devices/\(uuid)/iommu_group").path
            )
            .hasSuffix("/0"))
        #expect(
            await eventually {
                (try? await client.reservation(reservation.id).reason)??.contains("the lease ended while") == true
            })
        #expect(try await client.reservation(reservation.id).state == .active)
        #expect(agent.mdevExists(uuid))
        try FileManager.default.removeItem(at: process)
        #expect(await eventually { (try? await client.reservation(reservation.id).state) == .expired })
        #expect(!agent.mdevExists(uuid))
    }

    @Test("the emulator refuses to remove a held mdev (the kernel would wait for it to be closed)")
    func emulatorRefusesHeldRemoval() async throws {
        try await TestData.withFixtureCopy("mtty") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let uuid = "3b0a18e6-f67a-4c67-b818-8ef8b8a31ece"
            let process = tree.appendingPathComponent("proc/77/fd")
            try FileManager.default.createDirectory(at: process, withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(
                atPath: process.appendingPathComponent("3").path, withDestinationPath: "/dev/vfio/0")
            let device = ReservedDevice(
                id: uuid, interface: .mdev, typeID: "mtty-2", function: .named("mtty"), gpu: .named("mtty"))
            #expect(try VGPUAllocator(sysfs: sysfs, catalog: try catalog()).holders(of: device).map(\.pid) == [77])
            refused("busy") { try sysfs.writeFile("sys/bus/mdev/devices/\(uuid)/remove", "1") }
        }
    }
}

extension Collection {
    /// The one element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
