import Foundation
import VGPUAgentClient
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationLibvirt
import VGPUPolicies

/// One migration, driven through the state machine and recorded at every step:
/// check → reserve on the destination agent → rewrite the domain XML → migrate with the policy's
/// downtime schedule and timeouts → commit the reservation, or release it and leave the VM on the
/// source. Each side effect is recorded as an intent before it happens.
struct MigrationRun {
    var store: any HistoryStore
    /// The source host; its agent, when it has one, gets the VM's vGPU back after the switchover.
    var source: MigrationHost
    /// The destination host; its agent reserves the vGPUs.
    var destination: MigrationHost
    /// The destination's inventory entry: its libvirt URI and migration address.
    var destinationHost: InventoryHost
    var policy: MigrationPolicy
    var vm: String
    var bandwidthMiBPerSecond: Double?
    /// Failing checks the operator accepts (`--force`).
    var forcedChecks: Set<String>
    /// Called with each step.
    var report: @Sendable (String) -> Void
    /// Called with the job's progress at every monitor interval.
    var progress: @Sendable (String) -> Void
    /// Set when the operator asks to abort (Ctrl-C).
    var interrupt: OperatorInterrupt? = nil
    /// For crash tests: a point (a state entered, or `reserved`: the destination agent answered,
    /// the record does not know yet) where the coordinator stops and waits to be killed.
    var pauseAt: String? = nil

    func run() async throws(CommandFailure) -> MigrationRecord {
        var record = MigrationRecord(
            id: UUID().uuidString.lowercased(), vm: vm, source: source.name, destination: destination.name,
            policy: policy.name, at: Date())
        do {
            try await store.begin(record)
        } catch {
            throw CommandFailure("\(error)", remedy: "wait for it to end, or abort it with 'vgpu-migrate abort'")
        }
        report("migration \(record.id): \(vm) \(source.name) → \(destination.name), policy \(policy.name)")
        await pauseIfAsked(MigrationState.requested.rawValue)
        do {
            try await drive(&record)
        } catch is OperatorCancellation {
            try await end(&record, .cancelled, "aborted by the operator (Ctrl-C); the VM stays on \(source.name)")
        } catch let unclear as UnclearOutcome {
            try await leaveForReconcile(&record, unclear.reason)
        } catch {
            let message = (error as? CommandFailure)?.message ?? "\(error)"
            if record.state == .completing || record.state == .completed {
                try await leaveForReconcile(
                    &record, "the VM runs on \(destination.name), but \(message); its reservation is kept")
            } else {
                try await end(&record, .failed, message)
            }
        }
        return record
    }

    // MARK: Steps

    private func drive(_ record: inout MigrationRecord) async throws {
        try await move(&record, to: .checking, "pre-flight check")
        guard let hypervisor = source.hypervisor else {
            throw CommandFailure("\(source.name) has no libvirt connection: the VM cannot be migrated from there")
        }
        guard let guest = try await hypervisor.guestDomain(named: vm) else {
            throw CommandFailure("VM \(vm) is not defined on \(source.name)")
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
            bandwidthMiBPerSecond: bandwidthMiBPerSecond, cpuComparison: cpu)
        let check = CompatibilityRules.evaluate(subject, policy: policy.checks)
        record.findings = check.findings
        let failing = check.findings.filter { $0.severity == .fail && !forcedChecks.contains($0.check) }
        guard failing.isEmpty else {
            throw CommandFailure(
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
        if !vgpus.isEmpty {
            let types = Set(vgpus.compactMap { $0.hostVGPU?.typeID })
            guard types.count == 1, let typeID = types.first, vgpus.allSatisfy({ $0.hostVGPU != nil }) else {
                throw CommandFailure("the VM's vGPUs must all be known on \(source.name) and of one type")
            }
            guard let agent = destination.agent else {
                throw CommandFailure("\(destination.name) has no agent_url: no vGPU can be reserved there")
            }
            // The lease outlives the longest the policy lets the migration run, plus slack for the
            // commit; a crashed coordinator's reservation still ends by itself.
            let gibibytes = max(1, Double(domain.memoryBytes + Self.framebufferBytes(vgpus)) / 1_073_741_824)
            let request = ReservationRequest(
                typeID: typeID, count: vgpus.count, owner: record.id,
                leaseSeconds: Int(min(86_400, policy.completionTimeoutSecondsPerGiB * gibibytes + 600)),
                idempotencyKey: "\(record.id)/reserve")
            record.intents.append(
                Intent(time: Date(), action: .reserve, details: ["type": typeID, "count": String(vgpus.count)]))
            try await save(record)
            let reservation = try await agent.reserve(request)
            await pauseIfAsked("reserved")
            record.reservation = ReservationReference(
                host: destination.name, id: reservation.id, devices: reservation.devices, state: reservation.state)
            var mapping: [HostdevSource: HostdevSource] = [:]
            for (vgpu, device) in zip(vgpus, reservation.devices) { mapping[vgpu.source] = device.hostdevSource }
            destinationXML = try DomainXMLRewriter.rewrite(
                destinationXML, mapping: mapping, vgpuSources: Set(vgpus.map(\.source)))
        }
        try await move(
            &record, to: .migrating,
            vgpus.isEmpty
                ? "no vGPU to reserve" : "reserved \(record.reservation!.devices.count) vGPU(s) on \(destination.name)")

        let outcome = try await migrate(
            &record, guest: guest, domain: domain, vgpus: vgpus, destinationXML: destinationXML)
        switch outcome {
        case .completed:
            // From here on the VM runs on the destination: nothing is rolled back any more.
            try await move(&record, to: .completing, "switched over to \(destination.name)")
            if record.finalStats == nil, let moved = try? await destination.hypervisor?.guestDomain(named: vm) {
                record.finalStats = try? await moved.jobStats(completed: true).sample(at: Date())
            }
            // The destination's commit and the source's give-back ask different hosts: they run side
            // by side, each recorded as an intent before its call. The source's vGPU goes back
            // whatever the commit answers: the VM has left the source, and an uncommitted
            // reservation's device is never removed while the VM's QEMU holds it.
            let committing = record.reservation.map(\.id)
            if let committing, destination.agent != nil {
                record.intents.append(Intent(time: Date(), action: .commit, details: ["reservation": committing]))
                try await save(record)
            }
            async let committed = Self.commit(committing, on: destination.agent)
            let leftBehind = await SourceVGPURelease(agent: source.agent, hostName: source.name).run(
                sources: vgpus.map(\.source)
            ) { id in
                record.intents.append(Intent(time: Date(), action: .releaseSource, details: ["reservation": id]))
                try await save(record)
            }
            switch await committed {
            case .success(let reservation)?:
                record.reservation?.state = reservation.state
            case .failure(let error)?:
                throw CommandFailure(
                    "\(destination.name)'s agent did not commit reservation \(committing ?? ""): \(error)")
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
            throw CommandFailure(reason)
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
        var controller = DowntimeController(
            policy: policy, memoryBytes: domain.memoryBytes, framebufferBytes: framebuffer,
            untrackedFramebufferBytes: untracked)
        var flags: MigrationFlags = .standard
        if policy.checks.postCopy && vgpus.isEmpty { flags.insert(.postCopy) }
        let parameters = MigrationParameters(
            destinationXML: destinationXML, persistentXML: destinationXML,
            migrateURI: destinationHost.migrationAddress.map { "tcp://\($0)" },
            listenAddress: destinationHost.migrationAddress,
            bandwidthMiBPerSecond: policy.bandwidthMiBPerSecond.map(UInt64.init))
        guard let destinationURI = destinationHost.libvirtURI else {
            throw CommandFailure("\(destination.name) has no libvirt_uri to migrate to")
        }
        var intent = ["to": destinationURI]
        if !vgpus.isEmpty { intent[SourceVGPURelease.detailKey] = SourceVGPURelease.encode(vgpus.map(\.source)) }
        record.intents.append(Intent(time: Date(), action: .startMigration, details: intent))
        try await save(record)
        report(
            "migrating (\(domain.memoryBytes >> 20) MiB RAM, initial downtime limit \(controller.currentMilliseconds) ms)"
        )

        let started = Date()
        let outcome = JobOutcome()
        // libvirt's migration events: a new pass over memory wakes the monitor at once (the
        // moment the remaining data says the most), the job-completed event brings the final
        // statistics. Without them the monitor still samples at the policy's interval.
        let subscription = try? await guest.migrationEvents()
        let watcher = Task {
            guard let subscription else { return }
            for await event in subscription.events { outcome.note(event) }
        }
        defer { watcher.cancel() }
        Task {
            do {
                try await guest.migrate(to: destinationURI, parameters: parameters, flags: flags)
                outcome.finish(nil)
            } catch {
                outcome.finish(error)
            }
        }
        var limitSet = false
        var selfAborted: String?
        var operatorAborted = false
        interrupt?.whenRequested { outcome.ring() }
        while !outcome.isFinished {
            // Wait the monitor interval; the migration's end, a new pass over memory and the
            // operator's abort wake the monitor at once (no polling in between).
            await outcome.wait(upToSeconds: Double(policy.monitorIntervalMilliseconds) / 1000)
            if outcome.isFinished { break }
            if interrupted(selfAborted: selfAborted) && !operatorAborted {
                operatorAborted = true
                record.intents.append(Intent(time: Date(), action: .abort, details: ["reason": "operator (Ctrl-C)"]))
                try await save(record)
                try? await guest.abortJob()
                continue
            }
            guard let stats = try? await guest.jobStats(), stats.isActive else { continue }
            let elapsed = Date().timeIntervalSince(started)
            if !limitSet {
                try? await guest.setMaxDowntime(milliseconds: UInt64(controller.currentMilliseconds))
                record.downtimeSteps.append(
                    DowntimeStep(
                        time: Date(), milliseconds: controller.currentMilliseconds,
                        reason: "initial (\(policy.schedule.kind))"))
                limitSet = true
            }
            let sample = stats.sample(at: Date())
            record.record(sample: sample)
            switch controller.decide(elapsedSeconds: elapsed, sample: sample) {
            case .keep:
                break
            case .raise(let ms, let reason), .forceSwitchover(let ms, let reason):
                try? await guest.setMaxDowntime(milliseconds: UInt64(ms))
                record.downtimeSteps.append(DowntimeStep(time: Date(), milliseconds: ms, reason: reason))
                report("downtime limit \(ms) ms: \(reason)")
            case .abort(let reason):
                if selfAborted == nil {
                    selfAborted = reason
                    record.intents.append(Intent(time: Date(), action: .abort, details: ["reason": reason]))
                    try await save(record)
                    report("aborting: \(reason)")
                    try? await guest.abortJob()
                }
            }
            progress(describe(sample, limit: controller.currentMilliseconds))
            try await save(record)
        }
        await subscription?.cancel()
        if outcome.error == nil, let completed = outcome.completedStats {
            record.finalStats = completed.sample(at: Date())
        }
        guard let failure = outcome.error else { return .completed }
        if let selfAborted { return .aborted("aborted by the policy: \(selfAborted); the VM stays on \(source.name)") }
        if let error = failure as? any HypervisorError, error.abortedJob { return .cancelled }
        // libvirt can report an error from the migration's last phase after the destination took
        // over; then the VM's vGPUs there are in use and must not be released.
        let whereabouts = await VMWhereabouts.locate(
            vm, source: source.hypervisor, sourceName: source.name, destination: destination.hypervisor,
            destinationName: destination.name)
        switch whereabouts {
        case .destinationOnly:
            report("libvirt reported \(failure), but the VM runs on \(destination.name): it switched over")
            return .completed
        case .onBoth, .unclear:
            let why = whereabouts.unclearReason(source: source.name, destination: destination.name) ?? ""
            throw UnclearOutcome(reason: "libvirt reported \(failure); \(why); the reservation is kept")
        case .notOnDestination:
            throw CommandFailure("migration failed: \((failure as? any HypervisorError)?.message ?? "\(failure)")")
        }
    }

    private func interrupted(selfAborted: String?) -> Bool {
        selfAborted == nil && interrupt?.isRequested == true
    }

    /// One progress line: phase, transferred, remaining, rate, dirty rate, iteration, limit, elapsed.
    private func describe(_ sample: JobSample, limit: Int) -> String {
        let total = sample.dataTotalBytes ?? 0
        let processed = sample.dataProcessedBytes ?? 0
        let percent = total > 0 ? min(100, Int(Double(processed) / Double(total) * 100)) : 0
        let iteration = sample.iteration ?? 0
        let phase = iteration <= 1 ? "first pass" : "pass \(iteration)"
        let dirty = sample.dirtyBytesPerSecond.map { "\($0 >> 20) MiB/s" } ?? "-"
        return
            "migrating (\(phase))  \(percent)% sent  remaining \((sample.dataRemainingBytes ?? 0) >> 20) MiB"
            + "  rate \((sample.memoryBytesPerSecond ?? 0) >> 20) MiB/s  dirty \(dirty)"
            + (sample.vfioDataTransferredBytes.map { "  VFIO \(byteSizeText($0))" } ?? "")
            + "  limit \(limit) ms  elapsed \(sample.elapsedMilliseconds / 1000) s"
    }

    // MARK: Ending

    private func end(_ record: inout MigrationRecord, _ state: MigrationState, _ reason: String)
        async throws(CommandFailure)
    {
        var reason = reason
        do {
            if let pending = try await releaseReservation(&record) { reason += "; \(pending)" }
        } catch {
            record.intents.append(Intent(time: Date(), action: .release, details: ["failed": "\(error)"]))
        }
        if !record.state.isTerminal {
            do {
                try record.transition(to: state, reason: reason, at: Date())
            } catch {
                // Already ended; nothing to add.
            }
        }
        do {
            try await store.save(record)
        } catch {
            throw CommandFailure(
                "the migration \(record.id) ended (\(state.rawValue)) but could not be recorded: \(error)")
        }
        report("\(state.rawValue): \(reason)")
    }

    /// After the switchover something failed (the commit, recording), or it is not clear where
    /// the VM runs: nothing is released. The record is left `unknown` for `reconcile`, which asks
    /// both hosts again and commits or releases the reservation.
    private func leaveForReconcile(_ record: inout MigrationRecord, _ reason: String) async throws(CommandFailure) {
        let why = reason + ": 'vgpu-migrate reconcile' settles the migration"
        do {
            if !record.state.isTerminal { try record.transition(to: .unknown, reason: why, at: Date()) }
            try await store.save(record)
        } catch {
            throw CommandFailure("the migration \(record.id) could not be recorded as unknown (\(reason)): \(error)")
        }
        report("\(MigrationState.unknown.rawValue): \(why)")
    }

    /// Releases the destination reservation; returns what is left to say when a process there
    /// still holds its vGPU open (the agent removes it once it is closed), else nil.
    @discardableResult
    private func releaseReservation(_ record: inout MigrationRecord) async throws -> String? {
        guard let reservation = record.reservation, reservation.state == .active, let agent = destination.agent else {
            return nil
        }
        record.intents.append(Intent(time: Date(), action: .release, details: ["reservation": reservation.id]))
        try await save(record)
        let released = try await agent.release(reservation.id)
        record.reservation?.state = released.state
        guard released.state == .releasing else { return nil }
        return "on \(destination.name), \(released.reason ?? "its vGPU is still held open")"
    }

    private func move(
        _ record: inout MigrationRecord, to state: MigrationState, _ reason: String, details: [String: String] = [:]
    ) async throws {
        // Before the job starts an abort needs no libvirt call: stop between the steps.
        if [.checking, .reserving, .migrating].contains(state), interrupt?.isRequested == true {
            throw OperatorCancellation()
        }
        try record.transition(to: state, reason: reason, details: details, at: Date())
        try await save(record)
        report("\(state.rawValue): \(reason)")
        await pauseIfAsked(state.rawValue)
    }

    /// Stops here for good when `pauseAt` names this point (the test then kills the process).
    private func pauseIfAsked(_ point: String) async {
        guard pauseAt == point else { return }
        report("paused at \(point) (\(MigrateCommand.pauseVariable))")
        while true { try? await Task.sleep(for: .seconds(3600)) }
    }

    private func save(_ record: MigrationRecord) async throws {
        try await store.save(record)
    }
}

/// One end of a migration as the engine sees it: the host's facts, its hypervisor and its agent.
struct MigrationHost: Sendable {
    var name: String
    var facts: HostInventory
    var hypervisor: (any Hypervisor)?
    var agent: (any HostAgent)?
}

/// The migration call failed and where the VM runs is not clear (``VMWhereabouts/unclear(_:)``):
/// left to `reconcile`, nothing released.
private struct UnclearOutcome: Error {
    var reason: String
}

/// The operator aborted before the migration job started.
private struct OperatorCancellation: Error {}

/// How the migration call ended, shared between its thread and the monitor loop, and what wakes
/// the monitor before its interval is over.
private final class JobOutcome: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private var failure: (any Error)?
    private var completed: DomainJobStats?
    /// Something happened since the monitor last waited.
    private var rung = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var waits = 0

    /// Takes in a libvirt migration event; a new pass over memory wakes the monitor.
    func note(_ event: MigrationEvent) {
        switch event {
        case .iteration(let pass):
            if pass > 1 { ring() }
        case .jobCompleted(let stats):
            lock.withLock { completed = stats }
        }
    }

    /// Wakes the monitor now (or its next wait at once).
    func ring() {
        lock.lock()
        guard let waiting = waiter else {
            rung = true
            lock.unlock()
            return
        }
        waiter = nil
        lock.unlock()
        waiting.resume()
    }

    /// Returns after `seconds`, or as soon as the job ends or something rings.
    func wait(upToSeconds seconds: Double) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if rung || done {
                rung = false
                lock.unlock()
                continuation.resume()
                return
            }
            waits += 1
            let this = waits
            waiter = continuation
            lock.unlock()
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in
                lock.lock()
                guard this == waits, let waiting = waiter else {
                    lock.unlock()
                    return
                }
                waiter = nil
                lock.unlock()
                waiting.resume()
            }
        }
    }

    /// The final statistics of the job-completed event, when it came.
    var completedStats: DomainJobStats? {
        lock.lock()
        defer { lock.unlock() }
        return completed
    }

    func finish(_ error: (any Error)?) {
        lock.withLock {
            done = true
            failure = error
        }
        ring()
    }

    var isFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return done
    }

    var error: (any Error)? {
        lock.lock()
        defer { lock.unlock() }
        return failure
    }
}
