import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUMigrationStorage

/// A real PostgreSQL server around the suite, stopped after it (also on failure).
struct PostgresForSuite: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let server = try PostgresServer.start()
        defer { server.stop() }
        try await PostgresServer.$current.withValue(server) { try await function() }
    }
}

/// The stores the suite runs against: the two real ones, and the in-memory one the engine's
/// tests use (held to the same behaviour).
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres, memory

    var testDescription: String { rawValue }

    /// A fresh, empty store, and a second handle on the same data (as a second process would have).
    func make() async throws -> (HistoryStore, HistoryStore, cleanup: @Sendable () -> Void) {
        switch self {
        case .sqlite:
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "vgpu-history-\(UUID().uuidString)")
            let path = directory.appendingPathComponent("history.sqlite").path
            return (
                try SQLiteHistoryStore(path: path), try SQLiteHistoryStore(path: path),
                { try? FileManager.default.removeItem(at: directory) }
            )
        case .memory:
            let store = InMemoryHistoryStore()
            return (store, store, {})
        case .postgres:
            let server = try #require(PostgresServer.current)
            let url = try server.createDatabase()
            return (try await PostgresHistoryStore.open(url: url), try await PostgresHistoryStore.open(url: url), {})
        }
    }
}

let t0 = Date(timeIntervalSince1970: 1_800_000_000)

func migration(_ id: String, vm: String, from: String = "a", to: String = "b", minute: Double = 0) -> MigrationRecord {
    MigrationRecord(
        id: id, vm: vm, source: from, destination: to, policy: "adaptive", at: t0.addingTimeInterval(minute * 60))
}

func finish(_ record: inout MigrationRecord, _ state: MigrationState = .completed) throws {
    let at = record.createdAt.addingTimeInterval(30)
    try record.transition(to: .checking, reason: "pre-flight", at: at)
    if state == .completed {
        try record.transition(to: .reserving, reason: "checks passed", at: at)
        try record.transition(to: .migrating, reason: "reserved", at: at)
        try record.transition(to: .completing, reason: "switched over", at: at)
    }
    try record.transition(to: state, reason: "done", at: at.addingTimeInterval(12))
}

@Suite("History store (SQLite and PostgreSQL, same suite)", .serialized, PostgresForSuite())
struct HistoryStoreSuite {
    @Test(
        "a cordon is seen by every handle, is kept when given again, and is lifted once",
        arguments: StoreKind.allCases)
    func cordons(kind: StoreKind) async throws {
        let (store, other, cleanup) = try await kind.make()
        defer { cleanup() }
        #expect(try await store.cordons().isEmpty)
        let first = HostCordon(host: "gpu-07", reason: "driver update", since: t0, by: "root@ops-1")
        let (made, created) = try await store.cordon(first)
        #expect(made == first && created)
        // A second cordon of the host keeps the first (its reason and time).
        let again = HostCordon(host: "gpu-07", reason: "again", since: t0.addingTimeInterval(60), by: nil)
        let (kept, createdAgain) = try await other.cordon(again)
        #expect(kept == first && !createdAgain)
        let second = HostCordon(host: "gpu-02", reason: "fan", since: t0.addingTimeInterval(5), by: nil)
        _ = try await store.cordon(second)
        #expect(try await other.cordons() == [second, first])
        #expect(try await other.uncordon(host: "gpu-07") == first)
        #expect(try await store.uncordon(host: "gpu-07") == nil)
        #expect(try await store.cordons() == [second])
    }

    @Test(
        "a drain round-trips with its plan and moves, is saved again as it goes, found by prefix, listed newest first",
        arguments: StoreKind.allCases)
    func drains(kind: StoreKind) async throws {
        let (store, other, cleanup) = try await kind.make()
        defer { cleanup() }
        #expect(try await store.drains(limit: 10).isEmpty)
        let plan = DrainPlan(
            policy: "adaptive",
            placements: [
                .init(
                    vm: "vm-1", source: "gpu-1", destination: "gpu-2",
                    vgpus: [
                        .init(
                            source: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", type: "nvidia-232", typeName: "GRID T4-4Q",
                            gpu: DeviceAddress("0000:3b:00.0")!, function: DeviceAddress("0000:3b:00.0")!)
                    ], estimate: nil, warnings: ["gpu.dirty-tracking: T4"])
            ], unplaced: [.init(vm: "vm-2", source: "gpu-1", reasons: ["gpu-2: vgpu.capacity: full"])],
            skipped: [.init(host: "gpu-3", reason: "cordoned: fan")])
        var first = DrainRecord(
            id: "d1000000-0000-4000-8000-000000000001", host: "gpu-1", policy: "adaptive", parallel: 2, at: t0,
            plan: plan)
        try await store.saveDrain(first)
        #expect(try await other.drain(id: first.id) == first)
        first.update(
            .init(vm: "vm-1", destination: "gpu-2", state: .moved, migrations: ["m1"]), at: t0.addingTimeInterval(30))
        first.end(at: t0.addingTimeInterval(31))
        try await other.saveDrain(first)
        let read = try #require(try await store.drain(id: "d1000000"))
        #expect(read == first && read.state == .incomplete && read.move(of: "vm-2")?.state == .unplaced)
        let second = DrainRecord(
            id: "d2000000-0000-4000-8000-000000000002", host: "gpu-2", policy: "adaptive", parallel: 5,
            at: t0.addingTimeInterval(60),
            plan: DrainPlan(policy: "adaptive", placements: [], unplaced: [], skipped: []))
        try await store.saveDrain(second)
        #expect(try await other.drains(limit: 10).map(\.id) == [second.id, first.id])
        #expect(try await other.drains(limit: 1).map(\.id) == [second.id])
        await #expect(throws: HistoryStoreError.self) { try await store.drain(id: "d") }
        #expect(try await store.drain(id: "d3") == nil)
    }

    @Test(
        "a record round-trips with its timeline, steps, samples, findings and reservation",
        arguments: StoreKind.allCases)
    func roundTrip(kind: StoreKind) async throws {
        let (store, _, cleanup) = try await kind.make()
        defer { cleanup() }
        var record = migration("11111111-0000-4000-8000-000000000001", vm: "vm-1")
        record.findings = [CompatibilityFinding("driver.version", .pass, "NVIDIA host driver 550.90.05 on both hosts")]
        try await store.begin(record)
        try record.transition(to: .checking, reason: "pre-flight", at: t0.addingTimeInterval(1))
        try record.transition(
            to: .reserving, reason: "checks passed", details: ["warnings": "1"], at: t0.addingTimeInterval(2))
        record.reservation = ReservationReference(
            host: "b", id: "22222222-0000-4000-8000-000000000002",
            devices: [
                ReservedDevice(
                    id: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", interface: .mdev, typeID: "nvidia-232",
                    function: DeviceAddress("0000:3b:00.0")!, gpu: DeviceAddress("0000:3b:00.0")!)
            ],
            state: .active)
        try record.transition(to: .migrating, reason: "reserved", at: t0.addingTimeInterval(3))
        record.downtimeSteps.append(DowntimeStep(time: t0.addingTimeInterval(4), milliseconds: 500, reason: "adaptive"))
        record.record(
            sample: JobSample(
                time: t0.addingTimeInterval(5), elapsedMilliseconds: 2000, dataRemainingBytes: 1 << 30, iteration: 2))
        record.finalStats = JobSample(
            time: t0.addingTimeInterval(9), elapsedMilliseconds: 6000, downtimeMilliseconds: 212)
        try record.transition(to: .completing, reason: "switched over", at: t0.addingTimeInterval(9))
        try record.transition(to: .completed, reason: "committed", at: t0.addingTimeInterval(10))
        try await store.save(record)
        let loaded = try #require(try await store.record(id: record.id))
        #expect(loaded == record)
        let summary = try #require(try await store.list(HistoryFilter()).first)
        #expect(summary == MigrationSummary(record))
        #expect(summary.downtimeMilliseconds == 212)
        #expect(summary.durationSeconds == 10)
    }

    @Test(
        "listing is newest first and filters by VM, host, status, start time and limit", arguments: StoreKind.allCases)
    func listing(kind: StoreKind) async throws {
        let (store, _, cleanup) = try await kind.make()
        defer { cleanup() }
        let hosts = ["a", "b", "c"]
        for index in 0..<30 {
            var record = migration(
                String(format: "00000000-0000-4000-8000-%012d", index), vm: "vm-\(index % 5)", from: hosts[index % 3],
                to: hosts[(index + 1) % 3], minute: Double(index))
            try await store.begin(record)
            try finish(&record, index % 4 == 0 ? .failed : .completed)
            try await store.save(record)
        }
        let all = try await store.list(HistoryFilter(limit: 100))
        #expect(all.count == 30)
        #expect(all.map(\.createdAt) == all.map(\.createdAt).sorted(by: >))
        #expect(try await store.list(HistoryFilter(limit: 7)).count == 7)
        #expect(try await store.list(HistoryFilter(vm: "vm-2", limit: 100)).allSatisfy { $0.vm == "vm-2" })
        #expect(try await store.list(HistoryFilter(vm: "vm-2", limit: 100)).count == 6)
        let viaC = try await store.list(HistoryFilter(host: "c", limit: 100))
        #expect(viaC.count == 20)
        #expect(viaC.allSatisfy { $0.source == "c" || $0.destination == "c" })
        let failed = try await store.list(HistoryFilter(state: .failed, limit: 100))
        #expect(failed.count == 8)
        #expect(failed.allSatisfy { $0.state == .failed })
        let recent = try await store.list(HistoryFilter(since: t0.addingTimeInterval(25 * 60), limit: 100))
        #expect(recent.count == 5)
        #expect(
            try await store.list(HistoryFilter(vm: "vm-1", host: "b", state: .completed, limit: 100)).allSatisfy {
                $0.vm == "vm-1" && ($0.source == "b" || $0.destination == "b") && $0.state == .completed
            })
    }

    @Test(
        "one unfinished migration per VM, also from a second process; the refusal names the running one",
        arguments: StoreKind.allCases)
    func exclusion(kind: StoreKind) async throws {
        let (store, other, cleanup) = try await kind.make()
        defer { cleanup() }
        var first = migration("33333333-0000-4000-8000-000000000001", vm: "vm-x")
        try await store.begin(first)
        await #expect(throws: HistoryStoreError.vmBusy(vm: "vm-x", migration: first.id, state: .requested)) {
            try await other.begin(migration("33333333-0000-4000-8000-000000000002", vm: "vm-x"))
        }
        // Another VM is not affected; once the first ends, the VM may move again.
        try await other.begin(migration("33333333-0000-4000-8000-000000000003", vm: "vm-y"))
        try finish(&first, .cancelled)
        try await store.save(first)
        try await other.begin(migration("33333333-0000-4000-8000-000000000004", vm: "vm-x", minute: 1))
        await #expect(throws: HistoryStoreError.duplicateID("33333333-0000-4000-8000-000000000003")) {
            try await store.begin(migration("33333333-0000-4000-8000-000000000003", vm: "vm-z"))
        }
    }

    @Test("racing coordinators: of 12 simultaneous starts for one VM exactly one wins", arguments: StoreKind.allCases)
    func race(kind: StoreKind) async throws {
        let (store, other, cleanup) = try await kind.make()
        defer { cleanup() }
        let wins = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<12 {
                let target = index % 2 == 0 ? store : other
                group.addTask {
                    do {
                        try await target.begin(
                            migration(String(format: "44444444-0000-4000-8000-%012d", index), vm: "vm-race"))
                        return true
                    } catch {
                        return false
                    }
                }
            }
            var wins = 0
            for await won in group where won { wins += 1 }
            return wins
        }
        #expect(wins == 1)
        #expect(try await store.unfinished().count == 1)
    }

    @Test("unfinished records come back oldest first; ids resolve by unique prefix", arguments: StoreKind.allCases)
    func unfinishedAndPrefix(kind: StoreKind) async throws {
        let (store, _, cleanup) = try await kind.make()
        defer { cleanup() }
        var done = migration("55555555-aaaa-4000-8000-000000000001", vm: "vm-1", minute: 0)
        try await store.begin(done)
        try finish(&done)
        try await store.save(done)
        var running = migration("55555555-bbbb-4000-8000-000000000002", vm: "vm-2", minute: 2)
        try await store.begin(running)
        try running.transition(to: .checking, reason: "pre-flight", at: t0.addingTimeInterval(121))
        try await store.save(running)
        try await store.begin(migration("66666666-cccc-4000-8000-000000000003", vm: "vm-3", minute: 1))
        #expect(try await store.unfinished().map(\.id) == ["66666666-cccc-4000-8000-000000000003", running.id])
        #expect(try await store.record(id: "55555555-b")?.id == running.id)
        #expect(try await store.record(id: "9999") == nil)
        await #expect(throws: HistoryStoreError.self) { try await store.record(id: "55555555") }
        await #expect(throws: HistoryStoreError.notFound("77777777-0000-4000-8000-000000000000")) {
            try await store.save(migration("77777777-0000-4000-8000-000000000000", vm: "vm-9"))
        }
    }
}
