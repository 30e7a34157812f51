import Foundation
import Logging
import VGPUMigrationCore

/// One migration, driven through the state machine and recorded at every step:
/// check → reserve on the destination agent → rewrite the domain XML → migrate with the policy's
/// downtime schedule and timeouts → commit the reservation, or release it and leave the VM on the
/// source. Each side effect is recorded as an intent before it happens.
///
/// The history store: before the migration job starts, a store that cannot be written stops the
/// migration (the reservation is released, the VM stays). Once the job runs, the migration goes
/// on to its end whatever the store does: the record is kept in the local journal meanwhile
/// (``MigrationRecorder``), and nothing is released while the job may still switch over.
package struct MigrationRun: Sendable {
    package var store: any HistoryStore
    /// Where records wait while the store cannot be written; nil keeps them in memory only.
    package var journal: (any RecordJournal)?
    /// The source host; its agent, when it has one, gets the VM's vGPU back after the switchover.
    package var source: MigrationHost
    /// The destination host; its agent reserves the vGPUs, its `libvirtURI` is migrated to.
    package var destination: MigrationHost
    package var policy: MigrationPolicy
    package var vm: String
    package var bandwidthMiBPerSecond: Double?
    /// Destination devices to reserve the vGPUs on first (a drain plan's GPUs or VFs); the
    /// agent chooses when they cannot take them. Empty leaves the choice to the agent.
    package var preferredDevices: [DeviceAddress] = []
    /// Failing checks the operator accepts (`--force`).
    package var forcedChecks: Set<String>
    /// Where the steps and the job's progress go.
    package var events: MigrationEventSink
    /// Set when the operator asks to abort.
    package var abort: AbortRequest?
    /// For crash tests: a point (a state entered, or `reserved`: the destination agent answered,
    /// the record does not know yet) where the run stops and waits to be killed.
    package var pauseAt: String?
    /// How long the record is tried in the store at the end before it is left in the journal.
    package var historyPatience: Duration
    package var clock: any MigrationClock
    package var logger: Logger

    package init(
        store: any HistoryStore, journal: (any RecordJournal)? = nil, source: MigrationHost,
        destination: MigrationHost, policy: MigrationPolicy, vm: String, bandwidthMiBPerSecond: Double? = nil,
        forcedChecks: Set<String> = [], events: MigrationEventSink = MigrationEventSink.discarded,
        abort: AbortRequest? = nil, pauseAt: String? = nil, historyPatience: Duration = .seconds(30),
        clock: any MigrationClock = SystemClock(), logger: Logger = .silent
    ) {
        self.store = store
        self.journal = journal
        self.source = source
        self.destination = destination
        self.policy = policy
        self.vm = vm
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
        self.forcedChecks = forcedChecks
        self.events = events
        self.abort = abort
        self.pauseAt = pauseAt
        self.historyPatience = historyPatience
        self.clock = clock
        self.logger = logger
    }

    /// Says which reserved devices are on none of the preferred ones (the agent found them
    /// taken, as when another coordinator reserved there since the plan), or nil when all are.
    package static func outsidePreference(_ devices: [ReservedDevice], _ prefer: [DeviceAddress]) -> String? {
        guard !prefer.isEmpty else { return nil }
        let wanted = Set(prefer)
        let elsewhere = devices.filter { !wanted.contains($0.function) && !wanted.contains($0.gpu) }
        guard !elsewhere.isEmpty else { return nil }
        let places = elsewhere.map { $0.function == $0.gpu ? $0.gpu.description : $0.function.description }
        return "on \(places.joined(separator: ", ")), not the planned "
            + prefer.map(\.description).joined(separator: ", ")
    }

    /// Runs the migration to its end and returns its record. Throws only when the migration
    /// could not begin (the history store refused it) or its end could not be kept anywhere.
    package func run() async throws(MigrationEngineError) -> MigrationRecord {
        var record = MigrationRecord(
            id: UUID().uuidString.lowercased(), vm: vm, source: source.name, destination: destination.name,
            policy: policy.name, at: clock.now)
        var logger = self.logger
        logger[metadataKey: "migration"] = "\(record.id)"
        logger[metadataKey: "vm"] = "\(vm)"
        try await refuseCordonedDestination()
        do {
            try await store.begin(record)
        } catch {
            let remedy =
                if case .vmBusy = error {
                    "wait for it to end, or abort it with 'vgpu-migrate abort'"
                } else {
                    "nothing was changed; check the history store (--database) and try again"
                }
            throw MigrationEngineError(.historyStore, "\(error)", remedy: remedy, cause: error)
        }
        let recorder = MigrationRecorder(
            store: store, journal: journal, clock: clock, events: events, logger: logger)
        let steps = Steps(run: self, recorder: recorder, logger: logger)
        events.yield(
            .began(
                migration: record.id, vm: vm, source: source.name, destination: destination.name, policy: policy.name))
        logger.info(
            "migration begins", metadata: ["source": "\(source.name)", "destination": "\(destination.name)"])
        await steps.pauseIfAsked(MigrationState.requested.rawValue, record)
        var ending: (MigrationState, String)
        do {
            try await steps.drive(&record)
            return try await steps.finish(record)
        } catch is OperatorCancellation {
            ending = (.cancelled, "aborted by the operator (Ctrl-C); the VM stays on \(source.name)")
        } catch let unclear as UnclearOutcome {
            return try await steps.leaveForReconcile(&record, unclear.reason)
        } catch {
            let message = (error as? MigrationEngineError)?.message ?? "\(error)"
            if record.state == .completing || record.state == .completed {
                return try await steps.leaveForReconcile(
                    &record, "the VM runs on \(destination.name), but \(message); its reservation is kept")
            }
            ending = (.failed, message)
        }
        return try await steps.end(&record, ending.0, ending.1)
    }
}

extension MigrationRun {
    /// A destination under maintenance (`vgpu-migrate cordon`) takes no migration.
    fileprivate func refuseCordonedDestination() async throws(MigrationEngineError) {
        let cordons: [HostCordon]
        do {
            cordons = try await store.cordons()
        } catch {
            throw MigrationEngineError(
                .historyStore, "cannot read the cordoned hosts: \(error)",
                remedy: "nothing was changed; check the history store (--database) and try again", cause: error)
        }
        guard let cordon = cordons.first(where: { $0.host == destination.name }) else { return }
        throw MigrationEngineError(
            .configuration,
            "\(destination.name) is cordoned (\(cordon.reason)"
                + (cordon.by.map { ", by \($0)" } ?? "") + "): no migration goes there",
            remedy:
                "'vgpu-migrate uncordon \(destination.name)' once its maintenance is over, or pick another destination "
                + "('vgpu-migrate check VM --from \(source.name) --to auto')")
    }
}

/// The steps of one run, with its recorder.
private struct Steps {
    var run: MigrationRun
    var recorder: MigrationRecorder
    var logger: Logger

    var source: MigrationHost { run.source }
    var destination: MigrationHost { run.destination }
    var policy: MigrationPolicy { run.policy }
    var vm: String { run.vm }
    var now: Date { run.clock.now }

    func drive(_ record: inout MigrationRecord) async throws {
        try await move(&record, to: .checking, "pre-flight check")
        guard let hypervisor = source.hypervisor else {
            throw failure("\(source.name) has no libvirt connection: the VM cannot be migrated from there")
        }
        guard let guest = try await hypervisor.guestDomain(named: vm) else {
            throw failure("VM \(vm) is not defined on \(source.name)")
        }
        // The migration's own connection opens while the check runs.
        guest.prepareMigration()
        let active = try await guest.isActive()
        let domain = try GuestDomain.parse(xml: try await guest.xml())
        let cpu: CheckSubject.CPUComparison =
            destination.hypervisor == nil
            ? .notChecked("no libvirt connection to \(destination.name)")
            : .notChecked("compared by libvirt when the migration starts")
        let subject = CheckSubject(
            vmName: vm, vmState: active ? .running : .notRunning, domain: domain, sourceName: source.name,
            source: source.facts, destinationName: destination.name, destination: destination.facts,
            bandwidthMiBPerSecond: run.bandwidthMiBPerSecond, cpuComparison: cpu)
        let check = CompatibilityRules.evaluate(subject, policy: policy.checks)
        record.findings = check.findings
        let failing = check.findings.filter { $0.severity == .fail && !run.forcedChecks.contains($0.check) }
        guard failing.isEmpty else {
            throw failure(
                "pre-flight check failed: " + failing.map { "\($0.check): \($0.message)" }.joined(separator: "; "))
        }
        var forced: [String] = []
        for finding in check.findings where finding.severity == .fail && !forced.contains(finding.check) {
            forced.append(finding.check)
        }
        try await move(
            &record, to: .reserving,
            "checks passed" + (forced.isEmpty ? "" : ", forced past \(forced.joined(separator: ", "))"),
            details: ["warnings": String(check.findings.filter { $0.severity == .warn }.count)])

        // Reserve the destination's vGPUs and point the domain XML at them.
        let vgpus = domain.vgpus(on: source.facts)
        var destinationXML = try await guest.xml(migratable: true)
        var reservedCount = 0
        var reservedElsewhere: String?
        if !vgpus.isEmpty {
            let types = Set(vgpus.compactMap { $0.hostVGPU?.typeID })
            guard types.count == 1, let typeID = types.first, vgpus.allSatisfy({ $0.hostVGPU != nil }) else {
                throw failure("the VM's vGPUs must all be known on \(source.name) and of one type")
            }
            guard let agent = destination.agent else {
                throw failure("\(destination.name) has no agent_url: no vGPU can be reserved there")
            }
            // The lease outlives the longest the policy lets the migration run, plus slack for the
            // commit; a crashed coordinator's reservation still ends by itself.
            let gibibytes = max(1, Double(domain.memoryBytes + Self.framebufferBytes(vgpus)) / 1_073_741_824)
            let request = ReservationRequest(
                typeID: typeID, count: vgpus.count, owner: record.id,
                leaseSeconds: Int(min(86_400, policy.completionTimeoutSecondsPerGiB * gibibytes + 600)),
                idempotencyKey: "\(record.id)/reserve", prefer: run.preferredDevices)
            try await intend(&record, .reserve(typeID: typeID, count: vgpus.count, at: now), jobStarted: false)
            let reservation = try await agent.reserve(request)
            await pauseIfAsked("reserved", record)
            record.reservation = ReservationReference(
                host: destination.name, id: reservation.id, devices: reservation.devices, state: reservation.state)
            reservedCount = reservation.devices.count
            reservedElsewhere = MigrationRun.outsidePreference(reservation.devices, run.preferredDevices)
            var mapping: [HostdevSource: HostdevSource] = [:]
            for (vgpu, device) in zip(vgpus, reservation.devices) { mapping[vgpu.source] = device.hostdevSource }
            destinationXML = try DomainXMLRewriter.rewrite(
                destinationXML, mapping: mapping, vgpuSources: Set(vgpus.map(\.source)))
        }
        try await move(
            &record, to: .migrating,
            vgpus.isEmpty
                ? "no vGPU to reserve"
                : "reserved \(reservedCount) vGPU(s) on \(destination.name)"
                    + (reservedElsewhere.map { ", \($0)" } ?? ""))

        let outcome = try await migrate(
            &record, guest: guest, domain: domain, vgpus: vgpus, destinationXML: destinationXML)
        switch outcome {
        case .completed:
            // From here on the VM runs on the destination: nothing is rolled back any more.
            try await move(&record, to: .completing, "switched over to \(destination.name)")
            if record.finalStats == nil, let moved = try? await destination.hypervisor?.guestDomain(named: vm) {
                record.finalStats = try? await moved.jobStats(completed: true).sample(at: now)
            }
            // The destination's commit and the source's give-back ask different hosts: they run side
            // by side, each recorded as an intent before its call. The source's vGPU goes back
            // whatever the commit answers: the VM has left the source, and an uncommitted
            // reservation's device is never removed while the VM's QEMU holds it.
            let committing = record.reservation.map(\.id)
            if let committing, destination.agent != nil {
                try await intend(&record, .commit(reservation: committing, at: now))
            }
            async let committed = Self.commit(committing, on: destination.agent)
            let leftBehind = await SourceVGPURelease(agent: source.agent, hostName: source.name).run(
                sources: vgpus.map(\.source)
            ) { id in
                try await intend(&record, .releaseSource(reservation: id, at: now))
            }
            switch await committed {
            case .success(let reservation)?:
                record.reservation?.state = reservation.state
            case .failure(let error)?:
                throw failure("\(destination.name)'s agent did not commit reservation \(committing ?? ""): \(error)")
            case nil:
                break
            }
            try await move(
                &record, to: .completed,
                "VM runs on \(destination.name)"
                    + (record.finalStats?.downtimeMilliseconds.map { ", downtime \($0) ms" } ?? "")
                    + (record.finalStats?.vfioDataTransferredBytes.map { ", VFIO device state \(byteSizeText($0))" }
                        ?? ""),
                details: leftBehind.summary.isEmpty ? [:] : ["source_vgpu": leftBehind.summary])
        case .aborted(let reason):
            throw failure(reason)
        case .cancelled:
            try await releaseReservation(&record)
            try await move(&record, to: .cancelled, "aborted by the operator; the VM stays on \(source.name)")
        }
    }

    /// Commits reservation `id` on `agent`; nil when there is nothing to commit.
    private static func commit(_ id: String?, on agent: (any HostAgent)?) async -> Result<Reservation, any Error>? {
        guard let id, let agent else { return nil }
        do {
            return .success(try await agent.commit(id))
        } catch {
            return .failure(error)
        }
    }

    /// The vGPU framebuffer of all the VM's vGPUs, in bytes.
    private static func framebufferBytes(_ vgpus: [GuestVGPU]) -> UInt64 {
        vgpus.reduce(UInt64(0)) { $0 + ($1.type?.framebufferMiB ?? 0) << 20 }
    }

    private enum Outcome {
        case completed
        case aborted(String)
        case cancelled
    }

    private func migrate(
        _ record: inout MigrationRecord, guest: any HypervisorDomain, domain: GuestDomain, vgpus: [GuestVGPU],
        destinationXML: String
    ) async throws -> Outcome {
        let framebuffer = Self.framebufferBytes(vgpus)
        let untracked = vgpus.reduce(UInt64(0)) { sum, vgpu in
            let tracked =
                vgpu.gpuAddress.flatMap { source.facts.gpu(containing: $0)?.board?.architecture.dirtyPageTracking }
                ?? false
            return sum + (tracked ? 0 : (vgpu.type?.framebufferMiB ?? 0) << 20)
        }
        let controller = DowntimeController(
            policy: policy, memoryBytes: domain.memoryBytes, framebufferBytes: framebuffer,
            untrackedFramebufferBytes: untracked)
        var flags: MigrationFlags = .standard
        if policy.checks.postCopy && vgpus.isEmpty { flags.insert(.postCopy) }
        let parameters = MigrationParameters(
            destinationXML: destinationXML, persistentXML: destinationXML,
            migrateURI: destination.migrationAddress.map { "tcp://\($0)" },
            listenAddress: destination.migrationAddress,
            bandwidthMiBPerSecond: policy.bandwidthMiBPerSecond.map(UInt64.init))
        guard let destinationURI = destination.libvirtURI else {
            throw MigrationEngineError(.configuration, "\(destination.name) has no libvirt_uri to migrate to")
        }
        try await intend(
            &record, .startMigration(to: destinationURI, sourceVGPUs: vgpus.map(\.source), at: now), jobStarted: false)
        events(
            .notice(
                migration: record.id,
                "migrating (\(domain.memoryBytes >> 20) MiB RAM, initial downtime limit \(controller.currentMilliseconds) ms)"
            ))

        // The job, libvirt's events, the record's writer and the monitor run together, and the
        // group ends only once the migration call returned: nothing after it is released or
        // recorded as ended while the job may still switch over.
        let job = MigrationJob()
        // libvirt's migration events: a new pass over memory wakes the monitor at once (the
        // moment the remaining data says the most), the job-completed event brings the final
        // statistics. Without them the monitor still samples at the policy's interval.
        let subscription = try? await guest.migrationEvents()
        run.abort?.whenRequested { job.ring() }
        var monitor = MigrationMonitor(
            guest: guest, controller: controller, startedAt: now,
            interval: .milliseconds(policy.monitorIntervalMilliseconds), setsInitialLimit: true, clock: run.clock,
            recorder: recorder, events: run.events, logger: logger,
            abortRequested: { [abort = run.abort] in abort?.isRequested == true })
        let watched = await withTaskGroup(of: Void.self, returning: MigrationMonitor.Outcome.self) { group in
            group.addTask { [flags] in
                do {
                    try await guest.migrate(to: destinationURI, parameters: parameters, flags: flags)
                    job.finish(nil)
                } catch {
                    job.finish(error)
                }
            }
            if let subscription {
                group.addTask { for await event in subscription.events { job.note(event) } }
            }
            group.addTask { await recorder.writeInBackground() }
            let watched = await monitor.watch(&record, until: .callReturns(job))
            await subscription?.cancel()
            await recorder.close()
            await group.waitForAll()
            return watched
        }
        if job.error == nil, let completed = job.completedStats {
            record.finalStats = completed.sample(at: now)
        }
        guard let failed = job.error else { return .completed }
        if let reason = watched.abortedByPolicy {
            return .aborted("aborted by the policy: \(reason); the VM stays on \(source.name)")
        }
        if let error = failed as? any HypervisorError, error.abortedJob { return .cancelled }
        // libvirt can report an error from the migration's last phase after the destination took
        // over; then the VM's vGPUs there are in use and must not be released.
        let whereabouts = await VMWhereabouts.locate(
            vm, source: source.hypervisor, sourceName: source.name, destination: destination.hypervisor,
            destinationName: destination.name)
        switch whereabouts {
        case .destinationOnly:
            events(
                .notice(
                    migration: record.id,
                    "libvirt reported \(failed), but the VM runs on \(destination.name): it switched over"))
            return .completed
        case .onBoth, .unclear:
            let why = whereabouts.unclearReason(source: source.name, destination: destination.name) ?? ""
            throw UnclearOutcome(reason: "libvirt reported \(failed); \(why); the reservation is kept")
        case .notOnDestination:
            throw failure("migration failed: \((failed as? any HypervisorError)?.message ?? "\(failed)")")
        }
    }

    // MARK: Ending

    /// Ends the record `state`, the destination reservation released first.
    func end(_ record: inout MigrationRecord, _ state: MigrationState, _ reason: String)
        async throws(MigrationEngineError) -> MigrationRecord
    {
        var reason = reason
        do {
            if let pending = try await releaseReservation(&record) { reason += "; \(pending)" }
        } catch {
            record.intents.append(.releaseFailed("\(error)", at: now))
        }
        if !record.state.isTerminal {
            do {
                try record.transition(to: state, reason: reason, at: now)
            } catch {
                // Already ended; nothing to add.
            }
        }
        events(.transition(migration: record.id, state: state, reason: reason))
        return try await finish(record)
    }

    /// After the switchover something failed (the commit, recording), or it is not clear where
    /// the VM runs: nothing is released. The record is left `unknown` for `reconcile`, which asks
    /// both hosts again and commits or releases the reservation.
    func leaveForReconcile(_ record: inout MigrationRecord, _ reason: String) async throws(MigrationEngineError)
        -> MigrationRecord
    {
        let why = reason + ": 'vgpu-migrate reconcile' settles the migration"
        if !record.state.isTerminal { try? record.transition(to: .unknown, reason: why, at: now) }
        events(.transition(migration: record.id, state: .unknown, reason: why))
        return try await finish(record)
    }

    /// Writes the record as the run leaves it: in the store, or in the journal when the store
    /// does not take it within the patience given.
    func finish(_ record: MigrationRecord) async throws(MigrationEngineError) -> MigrationRecord {
        let (written, place) = await recorder.finish(record, patience: run.historyPatience)
        switch place {
        case .store:
            break
        case .journal:
            events(
                .notice(
                    migration: record.id,
                    "the history store did not take the record; it waits in the local journal "
                        + "\(run.journal?.location ?? "") and goes into the history with the next vgpu-migrate "
                        + "command that opens it"))
        case .nowhere:
            throw MigrationEngineError(
                .historyStore,
                "the migration \(record.id) ended (\(record.state.rawValue)) but could not be recorded in the history "
                    + "store or the local journal",
                remedy: "its outcome is above; 'vgpu-migrate reconcile' settles it once the store answers")
        }
        return written
    }

    /// Releases the destination reservation; returns what is left to say when a process there
    /// still holds its vGPU open (the agent removes it once it is closed), else nil.
    @discardableResult
    private func releaseReservation(_ record: inout MigrationRecord) async throws -> String? {
        guard let reservation = record.reservation, reservation.state == .active, let agent = destination.agent else {
            return nil
        }
        try await intend(&record, .release(reservation: reservation.id, at: now))
        let released = try await agent.release(reservation.id)
        record.reservation?.state = released.state
        guard released.state == .releasing else { return nil }
        return "on \(destination.name), \(released.reason ?? "its vGPU is still held open")"
    }

    /// Records `action` as intended before it is done. Before the migration job started a
    /// history store that does not take it stops the migration (nothing that needs undoing has
    /// run); once the job ran, the intent may wait in the journal.
    private func intend(_ record: inout MigrationRecord, _ intent: Intent, jobStarted: Bool = true) async throws {
        let written = await record.intend(intent, recorder: recorder)
        try requireStore(written, jobStarted: jobStarted)
    }

    private func move(
        _ record: inout MigrationRecord, to state: MigrationState, _ reason: String, details: [String: String] = [:]
    ) async throws {
        // Before the job starts an abort needs no libvirt call: stop between the steps.
        if [.checking, .reserving, .migrating].contains(state), run.abort?.isRequested == true {
            throw OperatorCancellation()
        }
        try record.transition(to: state, reason: reason, details: details, at: now)
        try await save(record, jobStarted: ![.checking, .reserving, .migrating].contains(state))
        events(.transition(migration: record.id, state: state, reason: reason))
        logger.info("state", metadata: ["state": "\(state.rawValue)", "reason": "\(reason)"])
        await pauseIfAsked(state.rawValue, record)
    }

    private func save(_ record: MigrationRecord, jobStarted: Bool) async throws {
        try requireStore(await recorder.persist(record), jobStarted: jobStarted)
    }

    /// Before the migration job starts, a record that did not reach the store stops the run.
    private func requireStore(_ written: MigrationRecorder.Written, jobStarted: Bool) throws {
        if written != .store && !jobStarted {
            throw MigrationEngineError(
                .historyStore,
                "the history store cannot be written, so the migration does not start; the VM stays on \(source.name)")
        }
    }

    /// Stops here for good when `pauseAt` names this point (the test then kills the process).
    func pauseIfAsked(_ point: String, _ record: MigrationRecord) async {
        guard run.pauseAt == point else { return }
        events(.paused(migration: record.id, point: point))
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    private func events(_ event: MigrationRunEvent) {
        run.events.yield(event)
    }

    private func failure(_ message: String) -> MigrationEngineError {
        MigrationEngineError(.failed, message)
    }
}

/// The migration call failed and where the VM runs is not clear (``VMWhereabouts/unclear(_:)``):
/// left to `reconcile`, nothing released.
private struct UnclearOutcome: Error {
    var reason: String
}

/// The operator aborted before the migration job started.
private struct OperatorCancellation: Error {}
