import Foundation
import Synchronization
import VGPUMigrationCore

/// What a drain tells whoever drives it, as it happens.
package enum DrainEvent: Sendable, Hashable {
    /// The drain was recorded (or taken up again) with this many moves to run.
    case began(drain: String, host: String, moves: Int, resumed: Bool)
    /// A VM's migration starts; `attempt` 2 is the retry on another destination.
    case moveStarted(vm: String, destination: String, attempt: Int)
    /// A VM's migration ended (its record's state; `migration` nil when it could not begin).
    case moveEnded(
        vm: String, destination: String, state: MigrationState, migration: String?, downtimeMilliseconds: UInt64?,
        seconds: Double, reason: String?)
    /// A VM whose migration failed goes to another destination.
    case retrying(vm: String, failedOn: String, next: String)
    /// The moves done, running and left.
    case progress(done: Int, running: Int, left: Int)
    /// The drain could not be saved in the history store; it goes on and saves again at the next step.
    case historyStoreUnavailable(message: String)
    /// The run stops here for good (crash tests).
    case paused(afterMoves: Int)
}

/// How one move's migration ended, as the drain needs it.
package enum DrainMoveOutcome: Sendable {
    /// The migration ran; its record says how it ended.
    case ran(MigrationRecord)
    /// It could not begin (a configuration, an unreachable host, a store refusing it).
    case didNotBegin(MigrationEngineError)
}

/// A host's drain: its VMs' migrations run in an order and with the concurrency its limits allow,
/// each one a normal recorded migration; a VM whose migration fails (and stays on the host) is
/// retried once on its next-best destination; the drain's record is saved at every step.
package struct DrainRun: Sendable {
    package var store: any HistoryStore
    package var limits: DrainLimits
    /// Runs one recorded migration; `began` gets its id as soon as it is recorded.
    package var migrate:
        @Sendable (_ placement: DrainPlan.Placement, _ began: @escaping @Sendable (String) -> Void) async ->
            DrainMoveOutcome
    /// Where a VM goes after its migration failed, the destinations it tried left out; nil when
    /// no other destination can take it.
    package var replace: @Sendable (_ vm: String, _ excluding: Set<String>) async -> DrainPlan.Placement?
    package var events: @Sendable (DrainEvent) -> Void
    package var clock: any MigrationClock
    /// For crash tests: after this many moves have ended, the run stops and waits to be killed.
    package var pauseAfterMoves: Int?

    package init(
        store: any HistoryStore, limits: DrainLimits,
        migrate:
            @escaping @Sendable (DrainPlan.Placement, @escaping @Sendable (String) -> Void) async ->
            DrainMoveOutcome,
        replace: @escaping @Sendable (String, Set<String>) async -> DrainPlan.Placement? = { _, _ in nil },
        events: @escaping @Sendable (DrainEvent) -> Void = { _ in }, clock: any MigrationClock = SystemClock(),
        pauseAfterMoves: Int? = nil
    ) {
        self.store = store
        self.limits = limits
        self.migrate = migrate
        self.replace = replace
        self.events = events
        self.clock = clock
        self.pauseAfterMoves = pauseAfterMoves
    }

    /// Runs `placements` (the moves of `drain` still to make) to their end and returns the drain
    /// ended: completed when every VM moved, else incomplete.
    package func run(_ drain: DrainRecord, placements: [DrainPlan.Placement], resumed: Bool = false)
        async throws(MigrationEngineError) -> DrainRecord
    {
        // The moves to run, written once before anything starts.
        var start = drain
        for placement in placements {
            start.changeMove(of: placement.vm, at: clock.now) { move in
                move.destination = placement.destination
                move.state = .pending
            }
        }
        do {
            try await store.saveDrain(start)
        } catch {
            throw MigrationEngineError(
                .historyStore, "cannot record the drain: \(error)",
                remedy: "nothing was moved; check the history store (--database) and try again", cause: error)
        }
        let ledger = DrainLedger(start, store: store, events: events)
        events(.began(drain: drain.id, host: drain.host, moves: placements.count, resumed: resumed))
        var pending = placements
        var running: [String: DrainPlan.Placement] = [:]
        var tried: [String: Set<String>] = [:]
        var ended = 0
        let total = placements.count
        await withTaskGroup(of: (DrainPlan.Placement, DrainMoveOutcome).self) { group in
            // The group is passed in, never captured.
            func startMore(in group: inout TaskGroup<(DrainPlan.Placement, DrainMoveOutcome)>) {
                for placement in DrainSchedule.startable(
                    pending: pending, running: Array(running.values), limits: limits)
                {
                    pending.removeAll { $0.vm == placement.vm }
                    running[placement.vm] = placement
                    tried[placement.vm, default: []].insert(placement.destination)
                    ledger.update(placement.vm, at: clock.now) { move in
                        move.destination = placement.destination
                        move.state = .migrating
                    }
                    events(
                        .moveStarted(
                            vm: placement.vm, destination: placement.destination,
                            attempt: tried[placement.vm]?.count ?? 1))
                    let clock = self.clock
                    group.addTask { [migrate] in
                        let outcome = await migrate(placement) { id in
                            ledger.update(placement.vm, at: clock.now) { $0.migrations.append(id) }
                        }
                        return (placement, outcome)
                    }
                }
            }
            startMore(in: &group)
            events(.progress(done: 0, running: running.count, left: pending.count))
            while let (placement, outcome) = await group.next() {
                running[placement.vm] = nil
                let retry = await settle(placement, outcome, ledger: ledger, tried: tried[placement.vm] ?? [])
                if let retry {
                    pending.insert(retry, at: 0)
                } else {
                    ended += 1
                }
                if let pauseAfterMoves, ended >= pauseAfterMoves, ended < total {
                    await ledger.flush()
                    events(.paused(afterMoves: ended))
                    while true { try? await Task.sleep(for: .seconds(3600)) }
                }
                startMore(in: &group)
                events(.progress(done: ended, running: running.count, left: pending.count))
            }
        }
        ledger.end(at: clock.now)
        await ledger.flush()
        do {
            try await store.saveDrain(ledger.snapshot)
        } catch {
            events(.historyStoreUnavailable(message: "\(error)"))
        }
        return ledger.snapshot
    }

    /// Records how a move ended; returns where it goes next when it is retried.
    private func settle(
        _ placement: DrainPlan.Placement, _ outcome: DrainMoveOutcome, ledger: DrainLedger, tried: Set<String>
    ) async -> DrainPlan.Placement? {
        let now = clock.now
        let state: MigrationState
        let reason: String?
        switch outcome {
        case .ran(let record):
            state = record.state
            reason = state == .completed ? nil : record.events.last?.reason
            events(
                .moveEnded(
                    vm: placement.vm, destination: placement.destination, state: state, migration: record.id,
                    downtimeMilliseconds: record.downtimeMilliseconds, seconds: record.durationSeconds, reason: reason))
        case .didNotBegin(let error):
            state = .failed
            reason = error.message
            events(
                .moveEnded(
                    vm: placement.vm, destination: placement.destination, state: .failed, migration: nil,
                    downtimeMilliseconds: nil, seconds: 0, reason: error.message))
        }
        if state == .completed {
            ledger.update(placement.vm, at: now) { move in
                move.state = .moved
                move.reason = nil
            }
            return nil
        }
        // Only a VM known to stay on the host is tried elsewhere: a migration whose outcome is
        // unclear may have moved it, and `reconcile` settles it first.
        let staysOnHost = state == .failed || state == .cancelled
        if staysOnHost, tried.count < 2, let next = await replace(placement.vm, tried) {
            events(.retrying(vm: placement.vm, failedOn: placement.destination, next: next.destination))
            ledger.update(placement.vm, at: now) { move in
                move.state = .pending
                move.reason = "\(placement.destination): \(reason ?? state.rawValue)"
            }
            return next
        }
        ledger.update(placement.vm, at: now) { move in
            move.state = .failed
            move.reason =
                staysOnHost
                ? "\(placement.destination): \(reason ?? state.rawValue)"
                : "the migration to \(placement.destination) ended \(state.rawValue); run 'vgpu-migrate reconcile'"
        }
        return nil
    }
}

/// The drain's record while it runs: changed under a lock by the moves as they go, and written
/// to the store by one writer at a time, the newest state last.
final class DrainLedger: Sendable {
    /// The record and how many times it changed.
    private let state: Mutex<(record: DrainRecord, version: Int)>
    private let writer: DrainWriter

    init(_ record: DrainRecord, store: any HistoryStore, events: @escaping @Sendable (DrainEvent) -> Void) {
        state = Mutex((record, 0))
        writer = DrainWriter(store: store, events: events)
    }

    var snapshot: DrainRecord { state.withLock { $0.record } }

    func update(_ vm: String, at time: Date, _ change: (inout DrainRecord.Move) -> Void) {
        state.withLock { state in
            state.record.changeMove(of: vm, at: time, change)
            state.version += 1
        }
        saveInBackground()
    }

    func end(at time: Date) {
        state.withLock { state in
            state.record.end(at: time)
            state.version += 1
        }
    }

    private func saveInBackground() {
        let (record, version) = state.withLock { ($0.record, $0.version) }
        Task { await writer.save(record, version: version) }
    }

    /// Returns once the current state is written (or its write failed).
    func flush() async {
        let (record, version) = state.withLock { ($0.record, $0.version) }
        await writer.save(record, version: version)
        await writer.idle()
    }
}

/// Writes drain records one at a time; a state handed in while a write runs replaces any older
/// one waiting, and an older state is never written after a newer one.
actor DrainWriter {
    let store: any HistoryStore
    let events: @Sendable (DrainEvent) -> Void
    private var waiting: (record: DrainRecord, version: Int)?
    private var newest = -1
    private var writing = false
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    init(store: any HistoryStore, events: @escaping @Sendable (DrainEvent) -> Void) {
        self.store = store
        self.events = events
    }

    func save(_ record: DrainRecord, version: Int) async {
        guard version > newest, version > (waiting?.version ?? -1) else { return }
        waiting = (record, version)
        guard !writing else { return }
        writing = true
        while let next = waiting {
            waiting = nil
            newest = next.version
            do {
                try await store.saveDrain(next.record)
            } catch {
                events(.historyStoreUnavailable(message: "\(error)"))
            }
        }
        writing = false
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters = []
    }

    func idle() async {
        guard writing else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }
}
