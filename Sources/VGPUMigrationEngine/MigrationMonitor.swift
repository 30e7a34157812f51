import Foundation
import Logging
import Synchronization
import VGPUMigrationCore

/// Watches one migration job to its end: sample → decide → apply → record, at the policy's
/// interval, and at once when libvirt says a new pass over memory began or the operator asks to
/// abort. `migrate` and `reconcile` (a job whose coordinator is gone) both watch with it.
///
/// It never throws and never ends early: it returns only once the migration call returned
/// (``Until/callReturns(_:)``) or libvirt reports no job any more (``Until/jobEnds``), so
/// nothing is released or recorded as ended while the job may still switch over.
package struct MigrationMonitor: Sendable {
    /// What ends the watch.
    package enum Until: Sendable {
        /// The migration call this coordinator made returned.
        case callReturns(MigrationJob)
        /// libvirt reports no running job (or the host stops answering).
        case jobEnds
    }

    /// How the watch ended.
    package struct Outcome: Sendable, Hashable {
        /// The policy's reason, when the monitor aborted the job.
        package var abortedByPolicy: String?
        /// The operator asked to abort and the monitor did.
        package var abortedByOperator: Bool
    }

    package var guest: any HypervisorDomain
    /// Applies the policy's schedule and timeouts; nil watches without setting limits.
    package var controller: DowntimeController?
    /// When the job started, for the controller's timeouts.
    package var startedAt: Date
    package var interval: Duration
    /// Sets the controller's initial limit with the first sample (a job this coordinator started).
    package var setsInitialLimit: Bool
    package var clock: any MigrationClock
    package var recorder: MigrationRecorder
    package var events: MigrationEventSink
    package var logger: Logger
    /// Whether the operator asked to abort.
    package var abortRequested: @Sendable () -> Bool = { false }

    package init(
        guest: any HypervisorDomain, controller: DowntimeController?, startedAt: Date, interval: Duration,
        setsInitialLimit: Bool, clock: any MigrationClock, recorder: MigrationRecorder, events: MigrationEventSink,
        logger: Logger, abortRequested: @escaping @Sendable () -> Bool = { false }
    ) {
        self.guest = guest
        self.controller = controller
        self.startedAt = startedAt
        self.interval = interval
        self.setsInitialLimit = setsInitialLimit
        self.clock = clock
        self.recorder = recorder
        self.events = events
        self.logger = logger
        self.abortRequested = abortRequested
    }

    /// Watches until `until`, recording every sample, limit and abort in `record`.
    package mutating func watch(_ record: inout MigrationRecord, until: Until) async -> Outcome {
        var outcome = Outcome(abortedByPolicy: nil, abortedByOperator: false)
        var limitSet = !setsInitialLimit
        let wake: MigrationJob
        switch until {
        case .callReturns(let job): wake = job
        case .jobEnds: wake = MigrationJob()
        }
        while true {
            await wake.wait(upTo: interval, on: clock)
            if case .callReturns(let job) = until, job.isFinished { break }
            if abortRequested() && !outcome.abortedByOperator && outcome.abortedByPolicy == nil {
                outcome.abortedByOperator = true
                await abort(&record, reason: "operator (Ctrl-C)", announce: false)
                continue
            }
            guard let stats = try? await guest.jobStats(), stats.isActive else {
                if case .jobEnds = until { break }
                continue
            }
            let now = clock.now
            if !limitSet, let controller {
                try? await guest.setMaxDowntime(milliseconds: UInt64(controller.currentMilliseconds))
                record.downtimeSteps.append(
                    DowntimeStep(
                        time: now, milliseconds: controller.currentMilliseconds,
                        reason: "initial (\(controller.policy.schedule.kind))"))
                limitSet = true
            }
            let sample = stats.sample(at: now)
            record.record(sample: sample)
            switch controller?.decide(elapsedSeconds: now.timeIntervalSince(startedAt), sample: sample) {
            case .raise(let milliseconds, let reason)?:
                await setLimit(&record, milliseconds, reason, force: false)
            case .forceSwitchover(let milliseconds, let reason)?:
                await setLimit(&record, milliseconds, reason, force: true)
            case .abort(let reason)?:
                if outcome.abortedByPolicy == nil {
                    outcome.abortedByPolicy = reason
                    await abort(&record, reason: reason, announce: true)
                }
            case .keep?, nil:
                break
            }
            let limit = record.downtimeSteps.last?.milliseconds ?? controller?.currentMilliseconds ?? 0
            events.yield(.progress(migration: record.id, sample: sample, downtimeLimitMilliseconds: limit))
            await recorder.update(record)
        }
        return outcome
    }

    /// A new limit: applied when above the one in force (a job taken over may already have a
    /// higher one), or always when the policy forces the switchover.
    private func setLimit(_ record: inout MigrationRecord, _ milliseconds: Int, _ reason: String, force: Bool) async {
        guard force || milliseconds > (record.downtimeSteps.last?.milliseconds ?? 0) else { return }
        try? await guest.setMaxDowntime(milliseconds: UInt64(milliseconds))
        record.downtimeSteps.append(DowntimeStep(time: clock.now, milliseconds: milliseconds, reason: reason))
        logger.info("downtime limit", metadata: ["ms": "\(milliseconds)", "reason": "\(reason)"])
        events.yield(.downtimeLimit(migration: record.id, milliseconds: milliseconds, reason: reason))
    }

    /// Records the abort intent (in the store or the journal), then aborts the job.
    private func abort(_ record: inout MigrationRecord, reason: String, announce: Bool) async {
        await record.intend(.abort(reason: reason, at: clock.now), recorder: recorder)
        logger.notice("aborting the migration job", metadata: ["reason": "\(reason)"])
        if announce { events.yield(.aborting(migration: record.id, reason: reason)) }
        try? await guest.abortJob()
    }
}

/// The migration call of a job: how it ended, the final statistics libvirt's event brought, and
/// what wakes the monitor before its interval is over (the call's end, a new pass over memory,
/// the operator's abort).
package final class MigrationJob: Sendable {
    private struct State {
        var finished = false
        var failure: (any Error)?
        var completed: DomainJobStats?
        var rung = false
        var waiter: CheckedContinuation<Void, Never>?
        var waitCancelled = false
    }

    private let state = Mutex(State())

    package init() {}

    /// Takes in a libvirt migration event; a new pass over memory wakes the monitor.
    package func note(_ event: MigrationEvent) {
        switch event {
        case .iteration(let pass):
            if pass > 1 { ring() }
        case .jobCompleted(let stats):
            state.withLock { $0.completed = stats }
        }
    }

    /// Wakes the monitor now (or its next wait at once).
    package func ring() {
        let waiter = state.withLock { state in
            let waiter = state.waiter
            state.waiter = nil
            if waiter == nil { state.rung = true }
            return waiter
        }
        waiter?.resume()
    }

    /// The migration call returned, with `error` when it failed.
    package func finish(_ error: (any Error)?) {
        state.withLock {
            $0.finished = true
            $0.failure = error
        }
        ring()
    }

    package var isFinished: Bool { state.withLock { $0.finished } }
    /// Why the migration call failed; nil while it runs or when it succeeded.
    package var error: (any Error)? { state.withLock { $0.failure } }
    /// The final statistics of the job-completed event, when it came.
    package var completedStats: DomainJobStats? { state.withLock { $0.completed } }

    /// Returns after `duration` on `clock`, or as soon as the call ends or something rings.
    package func wait(upTo duration: Duration, on clock: any MigrationClock) async {
        let already = state.withLock { state in
            state.waitCancelled = false
            let now = state.rung || state.finished
            state.rung = false
            return now
        }
        if already { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(for: duration) }
            group.addTask { await self.rung() }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns when something rings, or when the waiting task is cancelled.
    private func rung() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    if state.rung || state.finished || state.waitCancelled {
                        state.rung = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                state.waitCancelled = true
                let waiter = state.waiter
                state.waiter = nil
                return waiter
            }
            waiter?.resume()
        }
    }
}
