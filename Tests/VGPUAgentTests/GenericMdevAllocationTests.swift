import Foundation
import Testing
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
        try await withTree("mtty") { tree in
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
        try await withTree("mtty-empty") { tree in
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
        try await withTree("mtty-empty") { tree in
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

extension Collection {
    /// The one element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
