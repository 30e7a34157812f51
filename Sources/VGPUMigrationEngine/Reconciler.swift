import Foundation
import Logging
import VGPUMigrationCore

/// Settles migrations that did not reach a terminal state (the coordinator died): asks libvirt
/// where the VM runs and whether a job is active (a running job is watched to its end under the
/// migration's policy, or aborted when asked), asks the destination agent which reservations
/// the migration holds, and ends each record `completed` (reservation committed) or `failed`
/// (reservation released, VM on the source). Nothing is left reserved, and nothing is released
/// under a VM that may run on the destination: when where it runs cannot be told
/// (``VMWhereabouts/unclear(_:)``) the record stays `unknown`, untouched, for a later reconcile.
package struct Reconciler: Sendable {
    package var store: any HistoryStore
    /// Where records wait while the store cannot be written.
    package var journal: (any RecordJournal)?
    /// How the hosts the records name are reached.
    package var hosts: any HostDirectory
    /// A record not updated for this long has lost its coordinator (a running one saves at every
    /// step and every monitor interval); younger ones are left to the coordinator driving them,
    /// except `unknown` ones, which no coordinator drives.
    package var staleAfterSeconds: Double
    /// Abort a migration job that is still running instead of watching it to its end.
    package var abortRunningJobs: Bool
    /// The policy a record names, to go on applying it to a job still running (nil: watch only).
    package var policyNamed: @Sendable (String) -> MigrationPolicy?
    package var events: MigrationEventSink
    /// How long a settled record is tried in the store before it is left in the journal.
    package var historyPatience: Duration
    package var clock: any MigrationClock
    package var logger: Logger

    package init(
        store: any HistoryStore, journal: (any RecordJournal)? = nil, hosts: any HostDirectory,
        staleAfterSeconds: Double, abortRunningJobs: Bool = false,
        policyNamed: @escaping @Sendable (String) -> MigrationPolicy? = { _ in nil },
        events: MigrationEventSink = MigrationEventSink.discarded, historyPatience: Duration = .seconds(30),
        clock: any MigrationClock = SystemClock(), logger: Logger = .silent
    ) {
        self.store = store
        self.journal = journal
        self.hosts = hosts
        self.staleAfterSeconds = staleAfterSeconds
        self.abortRunningJobs = abortRunningJobs
        self.policyNamed = policyNamed
        self.events = events
        self.historyPatience = historyPatience
        self.clock = clock
        self.logger = logger
    }

    /// Settles every abandoned record (of `vm` only, when given); returns them as they ended.
    package func reconcileAll(vm: String? = nil) async throws(MigrationEngineError) -> [MigrationRecord] {
        let unfinished: [MigrationRecord]
        do {
            unfinished = try await store.unfinished()
        } catch {
            throw MigrationEngineError(.historyStore, "\(error)", cause: error)
        }
        var settled: [MigrationRecord] = []
        for record in unfinished where vm == nil || record.vm == vm {
            // An `unknown` record has no coordinator: the one that ran it, or an earlier
            // reconcile, left it to be settled once its hosts answer.
            let age = clock.now.timeIntervalSince(record.updatedAt)
            if record.state != .unknown && age < staleAfterSeconds {
                events.yield(
                    .leftToCoordinator(migration: record.id, state: record.state, secondsSinceUpdate: Int(age)))
                continue
            }
            settled.append(try await reconcile(record))
        }
        return settled
    }

    package func reconcile(_ original: MigrationRecord) async throws(MigrationEngineError) -> MigrationRecord {
        var record = original
        var logger = self.logger
        logger[metadataKey: "migration"] = "\(record.id)"
        logger[metadataKey: "vm"] = "\(record.vm)"
        let recorder = MigrationRecorder(
            store: store, journal: journal, clock: clock, events: events, logger: logger)
        let startedMigration = record.intents.contains { $0.action == .startMigration }
        // Where is the VM, and is a job still running? Only asked once a migration was started.
        var runsOnDestination = false
        var location = "the migration had not started; the VM is on \(record.source)"
        if startedMigration {
            // A host that does not answer is not an error here: where the VM runs may still be
            // clear from the other one (VMWhereabouts), and otherwise the record waits.
            let source = try await reachable(record.source)
            let sourceGuest = try? await source?.guestDomain(named: record.vm)
            var aborted = false
            var watched = false
            if let sourceGuest, let stats = try? await sourceGuest.jobStats(), stats.isActive {
                if abortRunningJobs {
                    try? await sourceGuest.abortJob()
                    aborted = true
                    // libvirt ends an aborted job (and stops the destination's copy) a moment later.
                    await waitForJobEnd(sourceGuest)
                } else {
                    // The coordinator that watched this job is gone: take over until it ends.
                    aborted = await watch(&record, guest: sourceGuest, recorder: recorder, logger: logger)
                    watched = true
                }
            }
            let destination = try await reachable(record.destination)
            let history =
                aborted
                ? "its migration job was still running and was aborted; "
                : watched ? "its migration job was still running and was watched to its end; " : ""
            // Right after a job ended libvirt may still be stopping the destination's copy: a VM on
            // both hosts is asked about again, every 500 ms for 5 s.
            var whereabouts: VMWhereabouts
            var retries = 0
            repeat {
                if retries > 0 { try? await clock.sleep(for: .milliseconds(500)) }
                whereabouts = await VMWhereabouts.locate(
                    record.vm, source: source, sourceName: record.source, destination: destination,
                    destinationName: record.destination)
                retries += 1
            } while whereabouts == .onBoth && retries <= 10
            switch whereabouts {
            case .destinationOnly:
                runsOnDestination = true
                location = history + "the VM runs on \(record.destination)"
                let moved = try? await destination?.guestDomain(named: record.vm)
                record.finalStats = try? await moved?.jobStats(completed: true).sample(at: clock.now)
            case .notOnDestination:
                location = history + "the VM is on \(record.source)"
            case .onBoth, .unclear:
                let why = whereabouts.unclearReason(source: record.source, destination: record.destination) ?? ""
                return try await leaveUnknown(&record, history + why, recorder: recorder)
            }
        }

        // Settle the reservations the migration holds on the destination.
        if let agent = try hosts.agent(of: record.destination) {
            let held: [Reservation]
            do {
                held = try await agent.reservations().filter { $0.request.owner == record.id && $0.state == .active }
            } catch {
                throw MigrationEngineError(
                    .unreachable, "cannot ask \(record.destination)'s agent about migration \(record.id): \(error)",
                    cause: error)
            }
            for reservation in held {
                // Recorded before it is asked, as every side effect is.
                await record.intend(
                    runsOnDestination
                        ? .commit(reservation: reservation.id, at: clock.now)
                        : .release(reservation: reservation.id, at: clock.now), recorder: recorder)
                do {
                    let settled =
                        runsOnDestination
                        ? try await agent.commit(reservation.id) : try await agent.release(reservation.id)
                    record.reservation = ReservationReference(
                        host: record.destination, id: settled.id, devices: settled.devices, state: settled.state)
                } catch {
                    throw MigrationEngineError(
                        .unreachable, "cannot settle reservation \(reservation.id) of migration \(record.id): \(error)",
                        cause: error)
                }
            }
        }

        // The VM runs on the destination: give back what it left on the source.
        var details: [String: String] = [:]
        if runsOnDestination, let started = record.intents.last(where: { $0.action == .startMigration }),
            !started.sourceVGPUs.isEmpty
        {
            let agent = (try? hosts.agent(of: record.source)) ?? nil
            let released = await SourceVGPURelease(agent: agent, hostName: record.source).run(
                sources: started.sourceVGPUs
            ) { id in
                await record.intend(.releaseSource(reservation: id, at: clock.now), recorder: recorder)
            }
            if !released.summary.isEmpty { details["source_vgpu"] = released.summary }
        }

        let outcome: MigrationState = runsOnDestination ? .completed : .failed
        let reason = "reconciled after the coordinator stopped in \(record.state.rawValue): \(location)"
        do {
            if record.state != .unknown {
                try record.transition(to: .unknown, reason: "the coordinator stopped; outcome unknown", at: clock.now)
            }
            try record.transition(to: outcome, reason: reason, details: details, at: clock.now)
        } catch {
            throw MigrationEngineError(.failed, "migration \(record.id): \(error)", cause: error)
        }
        let written = try await finish(record, recorder: recorder)
        events.yield(.settled(migration: record.id, state: outcome, reason: reason))
        return written
    }

    /// Writes a settled record: in the store, else in the journal (an error all the same: the
    /// history does not show the outcome yet).
    private func finish(_ record: MigrationRecord, recorder: MigrationRecorder) async throws(MigrationEngineError)
        -> MigrationRecord
    {
        let (written, place) = await recorder.finish(record, patience: historyPatience)
        guard place == .store else {
            throw MigrationEngineError(
                .historyStore,
                "cannot record the outcome of \(record.id) (\(record.state.rawValue)) in the history store"
                    + (place == .journal ? "; it waits in the local journal \(journal?.location ?? "")" : ""),
                remedy: "run 'vgpu-migrate reconcile' again once the history store answers")
        }
        return written
    }

    /// Waits (up to a minute) until the domain has no migration job.
    private func waitForJobEnd(_ guest: any HypervisorDomain) async {
        for _ in 0..<300 {
            guard let stats = try? await guest.jobStats(), stats.isActive else { return }
            try? await clock.sleep(for: .milliseconds(200))
        }
    }

    /// Keeps a record whose VM cannot be placed `unknown`, with its reservation untouched, for a
    /// later reconcile to settle once both hosts answer.
    private func leaveUnknown(_ record: inout MigrationRecord, _ why: String, recorder: MigrationRecorder)
        async throws(MigrationEngineError) -> MigrationRecord
    {
        let reason =
            "cannot tell where the VM runs: \(why); nothing committed or released; "
            + "run 'vgpu-migrate reconcile' again once both hosts answer"
        if record.state != .unknown {
            try? record.transition(to: .unknown, reason: reason, at: clock.now)
        }
        let written = try await finish(record, recorder: recorder)
        events.yield(.settled(migration: record.id, state: .unknown, reason: reason))
        return written
    }

    /// Watches a migration job whose coordinator is gone until it ends, recording samples and
    /// applying the record's policy (new downtime limits, timeouts); returns whether it aborted
    /// the job.
    private func watch(
        _ record: inout MigrationRecord, guest: any HypervisorDomain, recorder: MigrationRecorder, logger: Logger
    ) async -> Bool {
        let policy = policyNamed(record.policy)
        events.yield(.watching(migration: record.id, policy: record.policy, policyFound: policy != nil))
        let started = record.intents.last { $0.action == .startMigration }?.time ?? record.createdAt
        let memory = ((try? await guest.xml()).flatMap { try? GuestDomain.parse(xml: $0) })?.memoryBytes ?? 0
        var monitor = MigrationMonitor(
            guest: guest,
            controller: policy.map {
                DowntimeController(policy: $0, memoryBytes: memory, framebufferBytes: 0, untrackedFramebufferBytes: 0)
            },
            startedAt: started, interval: .milliseconds(policy?.monitorIntervalMilliseconds ?? 1000),
            setsInitialLimit: false, clock: clock, recorder: recorder, events: events, logger: logger)
        let outcome = await withTaskGroup(of: Void.self, returning: MigrationMonitor.Outcome.self) { group in
            group.addTask { await recorder.writeInBackground() }
            let outcome = await monitor.watch(&record, until: .jobEnds)
            await recorder.close()
            await group.waitForAll()
            return outcome
        }
        return outcome.abortedByPolicy != nil
    }

    /// The host's hypervisor, or nil (and an event saying why) when it does not answer; an
    /// inventory that gives no way to reach it is an error.
    private func reachable(_ host: String) async throws(MigrationEngineError) -> (any Hypervisor)? {
        do {
            return try await hosts.hypervisor(of: host)
        } catch  where error.kind == .unreachable {
            events.yield(.hostUnreachable(host: host, message: error.message))
            return nil
        }
    }
}
