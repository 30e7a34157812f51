import Foundation
import Synchronization
import Testing
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUTestSupport

/// Migrations as a drain sees them: each one recorded in the history and driven through the
/// state machine to the end a test asks for, after a short wait; how many ran at once is kept.
final class ScriptedMigrations: Sendable {
    let store: any HistoryStore
    /// VM@destination → how its migration ends (completed unless named).
    let endings: [String: MigrationState]
    /// VM@destination that cannot begin.
    let refused: Set<String>
    private let counts = Mutex((running: 0, most: 0, started: [String]()))

    init(store: any HistoryStore, endings: [String: MigrationState] = [:], refused: Set<String> = []) {
        self.store = store
        self.endings = endings
        self.refused = refused
    }

    var most: Int { counts.withLock { $0.most } }
    var started: [String] { counts.withLock { $0.started } }

    func migrate(_ placement: DrainPlan.Placement, began: @Sendable (String) -> Void) async -> DrainMoveOutcome {
        let key = "\(placement.vm)@\(placement.destination)"
        counts.withLock { counts in
            counts.running += 1
            counts.most = max(counts.most, counts.running)
            counts.started.append(key)
        }
        defer { counts.withLock { $0.running -= 1 } }
        if refused.contains(key) {
            return .didNotBegin(MigrationEngineError(.unreachable, "cannot reach host \(placement.destination)"))
        }
        var record = MigrationRecord(
            id: UUID().uuidString.lowercased(), vm: placement.vm, source: placement.source,
            destination: placement.destination, policy: "adaptive", at: Date())
        try? await store.begin(record)
        began(record.id)
        try? await Task.sleep(for: .milliseconds(30))
        let ending = endings[key] ?? .completed
        try? record.transition(to: .checking, reason: "pre-flight", at: Date())
        try? record.transition(to: .reserving, reason: "checks passed", at: Date())
        try? record.transition(to: .migrating, reason: "reserved", at: Date())
        if ending == .completed {
            try? record.transition(to: .completing, reason: "switched over", at: Date())
        }
        try? record.transition(
            to: ending, reason: ending == .completed ? "done" : "the destination's libvirt died", at: Date())
        try? await store.save(record)
        return .ran(record)
    }
}

@Suite("A drain's run: limits, retries, its record")
struct DrainRunTests {
    static func placement(_ vm: String, to destination: String) -> DrainPlan.Placement {
        DrainPlan.Placement(vm: vm, source: "src", destination: destination, vgpus: [], estimate: nil, warnings: [])
    }

    static func drain(_ placements: [DrainPlan.Placement]) -> DrainRecord {
        DrainRecord(
            id: UUID().uuidString.lowercased(), host: "src", policy: "adaptive", parallel: 2, at: Date(),
            plan: DrainPlan(policy: "adaptive", placements: placements, unplaced: [], skipped: []))
    }

    @Test("four moves with --parallel 2: never more than two at once, each one recorded, the drain completed")
    func parallelLimit() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(store: store)
        let placements = ["vm-1", "vm-2", "vm-3", "vm-4"].map { Self.placement($0, to: "dst") }
        let run = DrainRun(
            store: store, limits: DrainLimits(parallel: 2, defaultOutbound: 4, defaultInbound: 4),
            migrate: migrations.migrate)
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(migrations.most == 2)
        #expect(ended.state == .completed)
        #expect(ended.moves.allSatisfy { $0.state == .moved && $0.migrations.count == 1 })
        let stored = try #require(try await store.drain(id: ended.id))
        #expect(stored == ended)
        for move in ended.moves {
            #expect(try await store.record(id: move.migrations[0])?.state == .completed)
        }
    }

    @Test("the per-host limits hold too: one out of the host at a time however large --parallel is")
    func outboundLimit() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(store: store)
        let placements = ["vm-1", "vm-2", "vm-3"].map { Self.placement($0, to: "dst-\($0)") }
        let run = DrainRun(
            store: store, limits: DrainLimits(parallel: 5, outboundPerHost: ["src": 1]), migrate: migrations.migrate)
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(migrations.most == 1 && ended.state == .completed)
    }

    @Test("a failed migration is retried once on the next destination; the others go on")
    func retryElsewhere() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(store: store, endings: ["vm-2@dst-a": .failed])
        let placements = ["vm-1", "vm-2", "vm-3"].map { Self.placement($0, to: "dst-a") }
        let asked = Mutex<[Set<String>]>([])
        let run = DrainRun(
            store: store, limits: DrainLimits(parallel: 2), migrate: migrations.migrate,
            replace: { vm, excluding in
                asked.withLock { $0.append(excluding) }
                return Self.placement(vm, to: "dst-b")
            })
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(ended.state == .completed)
        let moved = try #require(ended.move(of: "vm-2"))
        #expect(moved.destination == "dst-b" && moved.migrations.count == 2 && moved.state == .moved)
        #expect(asked.withLock { $0 } == [["dst-a"]])
        #expect(try await store.record(id: moved.migrations[0])?.state == .failed)
        #expect(Set(migrations.started) == ["vm-1@dst-a", "vm-2@dst-a", "vm-3@dst-a", "vm-2@dst-b"])
    }

    @Test("a retry that fails too, or no other destination, leaves the VM on the host: the drain is incomplete")
    func failedTwice() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(
            store: store, endings: ["vm-1@dst-a": .failed, "vm-1@dst-b": .failed, "vm-2@dst-a": .cancelled])
        let placements = ["vm-1", "vm-2", "vm-3"].map { Self.placement($0, to: "dst-a") }
        let run = DrainRun(
            store: store, limits: DrainLimits(parallel: 3), migrate: migrations.migrate,
            replace: { vm, _ in vm == "vm-1" ? Self.placement(vm, to: "dst-b") : nil })
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(ended.state == .incomplete)
        #expect(ended.move(of: "vm-1")?.state == .failed && ended.move(of: "vm-1")?.migrations.count == 2)
        #expect(ended.move(of: "vm-1")?.reason?.hasPrefix("dst-b: ") == true)
        #expect(ended.move(of: "vm-2")?.state == .failed && ended.move(of: "vm-2")?.migrations.count == 1)
        #expect(ended.move(of: "vm-3")?.state == .moved)
    }

    @Test("a migration whose outcome is unclear is not retried elsewhere: reconcile settles it")
    func unclearNotRetried() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(store: store, endings: ["vm-1@dst-a": .unknown])
        let placements = [Self.placement("vm-1", to: "dst-a")]
        let run = DrainRun(
            store: store, limits: DrainLimits(), migrate: migrations.migrate,
            replace: { vm, _ in Self.placement(vm, to: "dst-b") })
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(migrations.started == ["vm-1@dst-a"])
        #expect(ended.move(of: "vm-1")?.state == .failed)
        #expect(ended.move(of: "vm-1")?.reason?.contains("reconcile") == true)
    }

    @Test("a migration that cannot begin is retried on the next destination")
    func didNotBegin() async throws {
        let store = InMemoryHistoryStore()
        let migrations = ScriptedMigrations(store: store, refused: ["vm-1@dst-a"])
        let placements = [Self.placement("vm-1", to: "dst-a")]
        let run = DrainRun(
            store: store, limits: DrainLimits(), migrate: migrations.migrate,
            replace: { vm, _ in Self.placement(vm, to: "dst-b") })
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(ended.state == .completed && ended.move(of: "vm-1")?.destination == "dst-b")
        #expect(ended.move(of: "vm-1")?.migrations.count == 1)
    }

    @Test("the history store failing mid-drain does not stop it; the drain's end is saved once it answers")
    func storeFails() async throws {
        let history = InMemoryHistoryStore()
        let store = FlakyHistoryStore(history)
        let events = Mutex<[DrainEvent]>([])
        let migrations = ScriptedMigrations(store: history)
        let placements = ["vm-1", "vm-2"].map { Self.placement($0, to: "dst") }
        let run = DrainRun(
            store: store, limits: DrainLimits(parallel: 1),
            migrate: { placement, began in
                store.failing = placement.vm == "vm-1"
                return await migrations.migrate(placement, began: began)
            }, events: { event in events.withLock { $0.append(event) } })
        let ended = try await run.run(Self.drain(placements), placements: placements)
        #expect(ended.state == .completed)
        #expect(events.withLock { $0 }.contains { if case .historyStoreUnavailable = $0 { true } else { false } })
        #expect(try await history.drain(id: ended.id) == ended)
    }

    @Test("a drain the store refuses at the start moves nothing")
    func refusedAtStart() async throws {
        let store = FlakyHistoryStore(InMemoryHistoryStore())
        store.failing = true
        let migrations = ScriptedMigrations(store: store)
        let placements = [Self.placement("vm-1", to: "dst")]
        let run = DrainRun(store: store, limits: DrainLimits(), migrate: migrations.migrate)
        await #expect(throws: MigrationEngineError.self) {
            try await run.run(Self.drain(placements), placements: placements)
        }
        #expect(migrations.started == [])
    }
}
