import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUTestSupport

/// The history store stops answering while a migration runs (PostgreSQL restarting, a full disk):
/// the job goes on, nothing is released while it may still switch over, and the record, kept in
/// the journal meanwhile, says what happened once it reaches the store.
@Suite("history store faults during a migration (in memory, virtual time)")
struct HistoryStoreFaultTests {
    /// Makes the store fail `after` virtual seconds of the run, and answer again at `until`.
    func failStore(_ bench: EngineBench, after: Double, until: Double? = nil) {
        let store = bench.store
        bench.clock.whenMoved { [start = bench.clock.now] now in
            let elapsed = now.timeIntervalSince(start)
            store.failing = elapsed >= after && elapsed < (until ?? .infinity)
        }
    }

    @Test("the store fails mid-job and stays down: the VM completes, committed; the record waits in the journal")
    func storeDownToTheEnd() async throws {
        let bench = try await EngineBench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-pg", mdev: sourceDevice, memoryMiB: 4096)
        failStore(bench, after: 1)

        let record = try await bench.run("vm-pg", policy: try EngineBench.policy("adaptive")).run()

        // The migration went on to its end: VM on dst, reservation committed, source given back.
        #expect(record.state == .completed, "\(bench.events.all)")
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.committed])
        #expect(await bench.lab.guest("vm-pg", on: "dst")?.active == true)
        #expect(await bench.sourceAgent.devices.isEmpty)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit, .releaseSource])
        // The store still shows it migrating; the journal holds the whole record.
        #expect(try await bench.history.record(id: record.id)?.state == .migrating)
        #expect(try bench.journal.records() == [record])
        let notes = try #require(record.notes)
        #expect(notes.count == 1 && notes[0].text.hasPrefix("the history store could not be written"))
        #expect(
            bench.events.all.contains(
                .historyStoreUnavailable(
                    migration: record.id,
                    message: "the history store is not available: connection refused (the server is not running)",
                    journal: "memory")))
        #expect(bench.events.notices.contains { $0.contains("waits in the local journal") })

        // The store back: the replay writes the record, with a note saying so.
        bench.store.failing = false
        let replayed = await JournalReplay.replay(bench.journal, into: bench.store, at: bench.clock.now)
        #expect(replayed.map(\.settled) == [true])
        let stored = try #require(try await bench.history.record(id: record.id))
        #expect(stored.state == .completed && stored.intents == record.intents)
        #expect(stored.notes?.last?.text.hasPrefix("replayed from the local journal memory") == true)
        #expect(try bench.journal.records().isEmpty)
    }

    @Test("the store fails mid-job and comes back before the end: the record reaches it, noting the gap")
    func storeBackBeforeTheEnd() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-blip", memoryMiB: 4096)
        failStore(bench, after: 1, until: 2)

        let record = try await bench.run("vm-blip", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .completed, "\(bench.events.all)")
        #expect(try await bench.history.record(id: record.id) == record)
        #expect(try bench.journal.records().isEmpty)
        let notes = try #require(record.notes).map(\.text)
        #expect(notes.count == 2, "\(notes)")
        #expect(notes.first?.hasPrefix("the history store could not be written") == true)
        // Down for one virtual second; while down the store is tried again 5 s after a failure.
        let back = try #require(notes.last)
        #expect(back.hasPrefix("the history store took the record again after "), "\(back)")
        let seconds = try #require(Int(back.split(separator: " ").dropLast().last ?? ""))
        #expect((1...6).contains(seconds), "\(back)")
        #expect(bench.events.all.contains(.historyStoreBack(migration: record.id)))
        #expect(bench.store.refused > 0)
    }

    @Test("the store fails mid-job and the job fails: released only after the job ended, the VM on src")
    func storeDownJobFails() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-both-down", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        failStore(bench, after: 1)
        let lab = bench.lab
        bench.clock.whenMoved { [start = bench.clock.now] now in
            if now.timeIntervalSince(start) >= 3 {
                await lab.failMigrations(to: "dst", message: "End of file while reading data")
            }
        }
        let releases = ReleaseLog()
        let watched = ObservedAgent(
            agent: bench.destinationForRun,
            beforeRelease: { await releases.note(duringJob: await lab.isMigrating("vm-both-down", on: "src")) })

        let record = try await bench.run(
            "vm-both-down", policy: try EngineBench.policy("fixed-300ms"), force: EngineBench.overFixedCap,
            destinationAgent: watched
        ).run()

        #expect(record.state == .failed, "\(bench.events.all)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.released])
        #expect(await releases.duringJob == 0)
        #expect(await releases.all == 1)
        #expect(await bench.lab.guest("vm-both-down", on: "src")?.active == true)
        #expect(try bench.journal.records().map(\.state) == [.failed])
    }

    @Test("the store fails before the job starts: the migration stops, the reservation released, nothing moved")
    func storeDownBeforeTheJob() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-early", memoryMiB: 512)
        // The store stops answering once the reservation is made.
        let store = bench.store
        let failing = ObservedAgent(agent: bench.destinationForRun) { _ in store.failing = true }

        let record = try await bench.run(
            "vm-early", policy: try EngineBench.policy("adaptive"), destinationAgent: failing
        ).run()

        #expect(record.state == .failed, "\(bench.events.all)")
        #expect(record.events.last?.reason.contains("the history store cannot be written") == true)
        #expect(record.intents.map(\.action) == [.reserve, .release])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.released])
        #expect(await bench.lab.destinationXMLs.isEmpty)
        #expect(await bench.lab.guest("vm-early", on: "src")?.active == true)
        #expect(try bench.journal.records().map(\.state) == [.failed])
    }

    @Test("a record the store already shows ended (reconciled meanwhile) is not overwritten by the journal's copy")
    func replayKeepsTheStoresOutcome() async throws {
        let store = InMemoryHistoryStore()
        let journal = InMemoryRecordJournal()
        var record = MigrationRecord(
            id: "m-1", vm: "vm", source: "src", destination: "dst", policy: "adaptive", at: Date())
        try await store.begin(record)
        try record.transition(to: .checking, reason: "x", at: Date())
        var reconciled = record
        try reconciled.transition(to: .failed, reason: "reconciled", at: Date())
        try await store.save(reconciled)
        try journal.keep(record)

        let outcomes = await JournalReplay.replay(journal, into: store, at: Date())

        #expect(outcomes.map(\.settled) == [true])
        #expect(outcomes.first?.message.contains("already shows it failed") == true)
        #expect(try await store.record(id: "m-1") == reconciled)
        #expect(try journal.records().isEmpty)
    }
}

/// The releases a destination agent was asked for, and how many came while the VM's migration
/// job still ran.
actor ReleaseLog {
    private(set) var all = 0
    private(set) var duringJob = 0

    func note(duringJob running: Bool) {
        all += 1
        if running { duringJob += 1 }
    }
}
