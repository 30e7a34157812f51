import Foundation
import Testing
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUHost

func catalog() throws -> GPUBoardCatalog {
    let url = TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)
    return try GPUBoardCatalogFile.parse(try TestData.text(url), file: url.path)
}

func refused(_ message: String, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(sourceLocation: sourceLocation) {
        try body()
    } throws: { error in
        (error as? SysfsError)?.message.contains(message) == true
    }
}

@Suite("sysfs emulator follows the kernel")
struct SysfsEmulatorTests {
    static let t4Type = "sys/class/mdev_bus/0000:3b:00.0/mdev_supported_types"

    @Test("mdev create and remove: the errors the kernel gives, available_instances down and up")
    func mdevLifecycle() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let uuid = "0b9c1e2a-3f4d-4e5f-8a6b-7c8d9e0f1a2b"
            refused("Invalid argument") { try sysfs.writeFile("\(Self.t4Type)/nvidia-232/create", "not-a-uuid") }
            refused("No such file") { try sysfs.writeFile("\(Self.t4Type)/nvidia-999/create", uuid) }
            try sysfs.writeFile("\(Self.t4Type)/nvidia-232/create", uuid)
            refused("File exists") { try sysfs.writeFile("\(Self.t4Type)/nvidia-232/create", uuid) }
            #expect(try sysfs.readFile("\(Self.t4Type)/nvidia-232/available_instances") == "3\n")
            #expect(try sysfs.readFile("\(Self.t4Type)/nvidia-233/available_instances") == "0\n")  // homogeneity
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(uuid)/mdev_type")?.hasSuffix("nvidia-232") == true)
            for index in 0..<3 {
                try sysfs.writeFile("\(Self.t4Type)/nvidia-319/create", "0b9c1e2a-3f4d-4e5f-8a6b-7c8d9e0f1a3\(index)")
            }
            refused("Too many users") {
                try sysfs.writeFile("\(Self.t4Type)/nvidia-232/create", "0b9c1e2a-3f4d-4e5f-8a6b-7c8d9e0f1a40")
            }
            refused("No such file") {
                try sysfs.writeFile("sys/bus/mdev/devices/00000000-0000-4000-8000-000000000000/remove", "1")
            }
            refused("Invalid argument") { try sysfs.writeFile("sys/bus/mdev/devices/\(uuid)/remove", "yes") }
            try sysfs.writeFile("sys/bus/mdev/devices/\(uuid)/remove", "1")
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(uuid)") == nil)
            #expect(try sysfs.readFile("\(Self.t4Type)/nvidia-232/available_instances") == "1\n")
            refused("Permission denied") { try sysfs.writeFile("proc/sys/kernel/osrelease", "7.0") }
        }
    }

    @Test("SR-IOV mdev: a VF carries one vGPU; the other VFs follow homogeneity and max_instance")
    func sriovVFs() async throws {
        try await TestData.withFixtureCopy("a100-40gb") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            // One A100-20C exists on 0000:ca:00.4; max_instance 2: one more fits, then none.
            try sysfs.writeFile(
                "sys/class/mdev_bus/0000:ca:00.5/mdev_supported_types/nvidia-472/create",
                "5e0b8b1a-1111-4222-8333-944455556666")
            #expect(
                try sysfs.readFile(
                    "sys/class/mdev_bus/0000:ca:00.5/mdev_supported_types/nvidia-472/available_instances") == "0\n")
            #expect(
                try sysfs.readFile(
                    "sys/class/mdev_bus/0000:ca:00.6/mdev_supported_types/nvidia-472/available_instances") == "0\n")
            refused("Too many users") {
                try sysfs.writeFile(
                    "sys/class/mdev_bus/0000:ca:00.6/mdev_supported_types/nvidia-472/create",
                    "5e0b8b1a-1111-4222-8333-944455556667")
            }
            try sysfs.writeFile("sys/bus/mdev/devices/5e0b8b1a-1111-4222-8333-944455556666/remove", "1")
            try sysfs.writeFile("sys/bus/mdev/devices/3f2a7d5e-1c4b-4e8a-9d6f-0a1b2c3d4e5f/remove", "1")
            // Empty again: every type comes back on every VF.
            #expect(
                try sysfs.readFile(
                    "sys/class/mdev_bus/0000:ca:00.6/mdev_supported_types/nvidia-468/available_instances") == "1\n")
        }
    }

    @Test("vendor-specific VFs: current_vgpu_type takes a creatable type, EBUSY when taken, 0 frees")
    func vendorVFs() async throws {
        try await TestData.withFixtureCopy("l40s") { tree in
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let vf = "sys/bus/pci/devices/0000:41:00.6/nvidia"
            // 16Q is not offered while 8Q vGPUs exist on the GPU (homogeneity).
            refused("Invalid argument") { try sysfs.writeFile("\(vf)/current_vgpu_type", "1154") }
            refused("Invalid argument") { try sysfs.writeFile("\(vf)/current_vgpu_type", "eight") }
            try sysfs.writeFile("\(vf)/current_vgpu_type", "1152")
            refused("Device or resource busy") { try sysfs.writeFile("\(vf)/current_vgpu_type", "1162") }
            #expect(try CreatableVGPUType.parseList(try sysfs.readFile("\(vf)/creatable_vgpu_types") ?? "").isEmpty)
            try sysfs.writeFile("\(vf)/current_vgpu_type", "0")
            let listed = try CreatableVGPUType.parseList(try sysfs.readFile("\(vf)/creatable_vgpu_types") ?? "").map(
                \.id)
            #expect(listed == [1152, 1162])
        }
    }
}

@Suite("reservation book reconciliation")
struct ReservationReconcileTests {
    @Test("after a crash mid-create the devices are removed; a vanished device marks the reservation lost")
    func reconcile() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let state = tree.deletingLastPathComponent().appendingPathComponent("state")
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let allocator = VGPUAllocator(sysfs: sysfs, catalog: try catalog())
            do {
                let book = try ReservationBook(allocator: allocator, stateDirectory: state)
                _ = try await book.reserve(
                    ReservationRequest(
                        typeID: "nvidia-232", count: 2, owner: "a", leaseSeconds: 600, idempotencyKey: "a"))
                _ = try await book.reserve(
                    ReservationRequest(
                        typeID: "nvidia-232", count: 1, owner: "b", leaseSeconds: 600, idempotencyKey: "b"))
            }
            // Simulate a crash between the journal's 'creating' line and the devices: the journal
            // ends with a reservation still creating whose first device exists.
            let journal = state.appendingPathComponent("reservations.jsonl")
            let planned = "77777777-0000-4000-8000-000000000001"
            try sysfs.writeFile("sys/class/mdev_bus/0000:3b:00.0/mdev_supported_types/nvidia-232/create", planned)
            let creating =
                #"{"created_at":785750400,"devices":[{"function":"0000:3b:00.0","gpu":"0000:3b:00.0","id":"\#(planned)","interface":"mdev","type_id":"nvidia-232"}],"id":"99999999-0000-4000-8000-000000000009","lease_expires_at":4000000000,"request":{"count":1,"idempotency_key":"c","lease_seconds":600,"owner":"c","type_id":"nvidia-232"},"state":"creating","updated_at":785750400}"#
            let handle = try FileHandle(forWritingTo: journal)
            try handle.seekToEnd()
            try handle.write(contentsOf: Data((creating + "\n").utf8))
            try handle.close()
            // And one device of reservation 'a' vanishes.
            let book = try ReservationBook(allocator: allocator, stateDirectory: state)
            let a = await book.all().first { $0.request.owner == "a" }!
            try sysfs.writeFile("sys/bus/mdev/devices/\(a.devices[0].id)/remove", "1")

            let changed = try await book.reconcile()
            #expect(Set(changed.map(\.request.owner)) == ["a", "c"])
            let after = Dictionary(uniqueKeysWithValues: await book.all().map { ($0.request.owner, $0) })
            #expect(after["a"]?.state == .lost)
            #expect(after["b"]?.state == .active)
            #expect(after["c"]?.state == .failed)
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(planned)") == nil)
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(a.devices[1].id)") == nil)
            #expect(try sysfs.listDirectory("sys/bus/mdev/devices") == after["b"]!.devices.map(\.id))
        }
    }
}

@Suite("after a kill")
struct KilledWriterTests {
    @Test("a torn last journal line is dropped with a warning, and the next line is not appended to it")
    func tornJournalLine() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let state = tree.deletingLastPathComponent().appendingPathComponent("state")
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            func request(_ owner: String) -> ReservationRequest {
                ReservationRequest(
                    typeID: "nvidia-232", count: 1, owner: owner, leaseSeconds: 600, idempotencyKey: owner)
            }
            let (a, _) = try await ReservationBook(allocator: allocator, stateDirectory: state).reserve(request("a"))
            // A kill while the next line was written leaves part of it and no newline.
            let journal = state.appendingPathComponent("reservations.jsonl")
            let whole = try Data(contentsOf: journal)
            try (whole + Data(#"{"created_at":785750400,"devices":[{"fun"#.utf8)).write(to: journal)

            let reopened = try ReservationBook(allocator: allocator, stateDirectory: state)
            let warnings = await reopened.openingWarnings
            #expect(warnings.count == 1 && warnings[0].contains("line 3, 40 bytes) was cut short"), "\(warnings)")
            #expect(await reopened.all().map(\.id) == [a.id])
            let (b, _) = try await reopened.reserve(request("b"))

            let again = try ReservationBook(allocator: allocator, stateDirectory: state)
            #expect(await again.openingWarnings.isEmpty)
            #expect(Set(await again.all().map(\.id)) == [a.id, b.id])
        }
    }

    @Test("a line that does not read before the last one is damage, and the agent refuses to guess")
    func damagedJournalLine() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let state = tree.deletingLastPathComponent().appendingPathComponent("state")
            try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
            try Data("{not json\n{}\n".utf8).write(to: state.appendingPathComponent("reservations.jsonl"))
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: try catalog()), catalog: try catalog())
            #expect {
                _ = try ReservationBook(allocator: allocator, stateDirectory: state)
            } throws: { error in
                "\(error)".contains("the reservation journal is damaged: line 1 of")
            }
        }
    }

    @Test("killed while it saved its state file (before any change): the next emulator removes the temporary copy")
    func stateFileLeftover() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let leftover = tree.appendingPathComponent(".\(SysfsEmulator.stateFileName).vgpu-tmp.4242")
            try Data("{\"empty_cap".utf8).write(to: leftover)
            let emulator = try SysfsEmulator(root: tree.path, catalog: try catalog())
            #expect(!FileManager.default.fileExists(atPath: leftover.path))
            // The tree reads as the fixture: nothing else was touched.
            #expect(try emulator.readFile("\(SysfsEmulatorTests.t4Type)/nvidia-232/available_instances") != nil)
        }
    }

    @Test("an emulator opened on a tree a killed one left half changed settles it from the devices there")
    func settlesHalfDoneChanges() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let emulator = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let kept = "0b9c1e2a-3f4d-4e5f-8a6b-7c8d9e0f1a2b"
            try emulator.writeFile("\(SysfsEmulatorTests.t4Type)/nvidia-232/create", kept)
            let counts = try emulator.readFile("\(SysfsEmulatorTests.t4Type)/nvidia-232/available_instances")
            #expect(FileManager.default.fileExists(atPath: tree.appendingPathComponent(".vgpu-emulator.json").path))

            // What kills at different instants leave: a device being built, a device made but
            // not linked, a file being replaced, a count not yet rewritten, a link to nothing.
            let parent = try #require(try emulator.readLink("sys/class/mdev_bus/0000:3b:00.0"))
            let parentDirectory = tree.appendingPathComponent("sys/class/mdev_bus").appendingPathComponent(parent)
                .standardizedFileURL
            let building = parentDirectory.appendingPathComponent(".11111111-2222-4333-8444-555555555555.vgpu-tmp")
            let unlinked = parentDirectory.appendingPathComponent("66666666-7777-4888-8999-aaaaaaaaaaaa")
            for directory in [building, unlinked] {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            }
            let typeDirectory = tree.appendingPathComponent("\(SysfsEmulatorTests.t4Type)/nvidia-232")
            try Data("1\n".utf8).write(to: typeDirectory.appendingPathComponent(".available_instances.vgpu-tmp.4242"))
            try Data("7\n".utf8).write(to: typeDirectory.appendingPathComponent("available_instances"))
            try FileManager.default.createSymbolicLink(
                atPath: tree.appendingPathComponent("sys/bus/mdev/devices/bbbbbbbb-cccc-4ddd-8eee-ffffffffffff").path,
                withDestinationPath: "../../../devices/gone")

            let reopened = try SysfsEmulator(root: tree.path, catalog: try catalog())
            #expect(try reopened.listDirectory("sys/bus/mdev/devices") == [kept])
            #expect(try reopened.readFile("\(SysfsEmulatorTests.t4Type)/nvidia-232/available_instances") == counts)
            for leftover in [
                building, unlinked, typeDirectory.appendingPathComponent(".available_instances.vgpu-tmp.4242"),
            ] {
                #expect(!FileManager.default.fileExists(atPath: leftover.path), "\(leftover.path)")
            }
            try reopened.writeFile("sys/bus/mdev/devices/\(kept)/remove", "1")
            #expect(try reopened.listDirectory("sys/bus/mdev/devices") == [])
        }
    }
}

/// A clock the test moves by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)

    func now() -> Date {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    func advance(seconds: Double) {
        lock.lock()
        current = current.addingTimeInterval(seconds)
        lock.unlock()
    }
}

@Suite("reservation leases")
struct ReservationLeaseTests {
    @Test("an active reservation expires when its lease ends; a committed one never does")
    func leases() async throws {
        try await TestData.withFixtureCopy("t4-b") { tree in
            let clock = TestClock()
            let sysfs = try SysfsEmulator(root: tree.path, catalog: try catalog())
            let book = try ReservationBook(
                allocator: VGPUAllocator(sysfs: sysfs, catalog: try catalog()),
                stateDirectory: tree.deletingLastPathComponent().appendingPathComponent("state"), now: { clock.now() })
            let (lapsing, _) = try await book.reserve(
                ReservationRequest(typeID: "nvidia-232", count: 1, owner: "a", leaseSeconds: 60, idempotencyKey: "a"))
            let (kept, _) = try await book.reserve(
                ReservationRequest(typeID: "nvidia-232", count: 1, owner: "b", leaseSeconds: 60, idempotencyKey: "b"))
            _ = try await book.commit(kept.id)
            clock.advance(seconds: 59)
            #expect(await book.expireDue().isEmpty)
            clock.advance(seconds: 1)
            #expect(await book.expireDue().map(\.id) == [lapsing.id])
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(lapsing.devices[0].id)") == nil)
            clock.advance(seconds: 86_400)
            #expect(await book.expireDue().isEmpty)
            #expect(try await book.reservation(kept.id).state == .committed)
            #expect(try sysfs.readLink("sys/bus/mdev/devices/\(kept.devices[0].id)") != nil)
        }
    }
}
