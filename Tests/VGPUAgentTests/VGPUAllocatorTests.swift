import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUHost

@Suite("vGPU allocator placement")
struct VGPUAllocatorTests {
    @Test("a type goes to the GPU already carrying it; another size goes to the empty GPU")
    func packing() async throws {
        try await TestData.withFixtureCopy("t4-dual") { tree in
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            let same = try allocator.plan(typeID: "nvidia-232", count: 3)
            #expect(same.map(\.gpu.description) == ["0000:3b:00.0", "0000:3b:00.0", "0000:3b:00.0"])
            let other = try allocator.plan(typeID: "nvidia-233", count: 2)
            #expect(other.map(\.gpu.description) == ["0000:5e:00.0", "0000:5e:00.0"])
            // When the carrying GPU is full, the rest spills to the other one.
            let spill = try allocator.plan(typeID: "nvidia-232", count: 5)
            #expect(
                spill.map(\.gpu.description) == [
                    "0000:3b:00.0", "0000:3b:00.0", "0000:3b:00.0", "0000:5e:00.0", "0000:5e:00.0",
                ])
        }
    }

    @Test("with no GPU carrying the type, the emptiest GPU is chosen")
    func emptiest() async throws {
        try await TestData.withFixtureCopy("t4-dual") { tree in
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            // nvidia-319 (T4-4C, 4 GB) fits on both GPUs; neither carries it; 0000:5e:00.0 is empty.
            #expect(try allocator.plan(typeID: "nvidia-319", count: 1).map(\.gpu.description) == ["0000:5e:00.0"])
        }
    }

    @Test("a preferred GPU is used first while it can take the type; one that cannot is passed over")
    func preferredGPU() async throws {
        try await TestData.withFixtureCopy("t4-dual") { tree in
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            let busy = DeviceAddress("0000:3b:00.0")!
            let empty = DeviceAddress("0000:5e:00.0")!
            // Left to itself the allocator puts T4-4C on the empty GPU; asked, on the busy one.
            #expect(try allocator.plan(typeID: "nvidia-319", count: 1).map(\.gpu) == [empty])
            #expect(try allocator.plan(typeID: "nvidia-319", count: 1, prefer: [busy]).map(\.gpu) == [busy])
            // The busy GPU carries 4 GB vGPUs: a 2 GB type cannot go there, preferred or not.
            #expect(try allocator.plan(typeID: "nvidia-233", count: 1, prefer: [busy]).map(\.gpu) == [empty])
            // A preference for more than the preferred GPU holds spills to the usual choice.
            let spill = try allocator.plan(typeID: "nvidia-232", count: 5, prefer: [empty])
            #expect(spill.map(\.gpu) == [empty, empty, empty, empty, busy])
        }
    }

    @Test("a preferred VF is used first; a taken one is passed over")
    func preferredVF() async throws {
        try await TestData.withFixtureCopy("l40s") { tree in
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            let usual = try allocator.plan(typeID: "1162", count: 1)
            let free = try allocator.plan(typeID: "1162", count: 4).map(\.function)
            let wanted = try #require(free.last)
            #expect(usual.map(\.function) != [wanted])
            #expect(try allocator.plan(typeID: "1162", count: 1, prefer: [wanted]).map(\.function) == [wanted])
            // 0000:41:00.4 carries a vGPU already: asking for it gives another VF.
            let taken = DeviceAddress("0000:41:00.4")!
            #expect(
                try allocator.plan(typeID: "1162", count: 1, prefer: [taken]).map(\.function) == usual.map(\.function))
        }
    }

    @Test("--max-instances caps a type per GPU")
    func policyLimit() async throws {
        try await TestData.withFixtureCopy("t4-a") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let allocator = VGPUAllocator(sysfs: sysfs, catalog: try catalog(), maxInstances: ["nvidia-232": 2])
            #expect(try allocator.plan(typeID: "nvidia-232", count: 1).count == 1)
            #expect {
                try allocator.plan(typeID: "nvidia-232", count: 2)
            } throws: { error in
                (error as? AllocationError)?.description
                    == "no capacity: the host can create 1 more GRID T4-4Q (nvidia-232), 2 asked for"
            }
        }
    }

    @Test("on SR-IOV GPUs each device gets its own free VF offering the type")
    func sriov() async throws {
        try await TestData.withFixtureCopy("l40s") { tree in
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            let planned = try allocator.plan(typeID: "1162", count: 4)
            #expect(Set(planned.map(\.function)).count == 4)
            #expect(!planned.contains { ["0000:41:00.4", "0000:41:00.5"].contains($0.function.description) })
            for device in planned { try allocator.create(device) }
            #expect(try planned.allSatisfy { try allocator.exists($0) })
        }
    }
}
