import ArgumentParser
import Foundation
import VGPUAgentClient
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationLibvirt
import VGPUPolicies

/// Settles migrations that did not reach a terminal state (the coordinator died): asks libvirt
/// where the VM runs and whether a job is active (a running job is watched to its end under the
/// migration's policy, or aborted when asked), asks the destination agent which reservations
/// the migration holds, and ends each record `completed` (reservation committed) or `failed`
/// (reservation released, VM on the source). Nothing is left reserved, and nothing is released
/// under a VM that may run on the destination: when where it runs cannot be told
/// (``VMWhereabouts/unclear(_:)``) the record stays `unknown`, untouched, for a later reconcile.
struct Reconciler {
    var store: any HistoryStore
    /// How the hosts the records name are reached.
    var hosts: any HostDirectory
    /// A record not updated for this long has lost its coordinator (a running one saves at every
    /// step and every monitor interval); younger ones are left to the coordinator driving them,
    /// except `unknown` ones, which no coordinator drives.
    var staleAfterSeconds: Double
    /// Abort a migration job that is still running instead of watching it to its end.
    var abortRunningJobs = false
    /// The policy a record names, to go on applying it to a job still running (nil: watch only).
    var policyNamed: (String) -> MigrationPolicy? = { _ in nil }
    var report: @Sendable (String) -> Void

    /// Settles every abandoned record (of `vm` only, when given); returns them as they ended.
    func reconcileAll(vm: String? = nil) async throws(CommandFailure) -> [MigrationRecord] {
        let unfinished: [MigrationRecord]
        do {
            unfinished = try await store.unfinished()
        } catch {
            throw CommandFailure("\(error)")
        }
        var settled: [MigrationRecord] = []
        for record in unfinished where vm == nil || record.vm == vm {
            // An `unknown` record has no coordinator: the one that ran it, or an earlier
            // reconcile, left it to be settled once its hosts answer.
            if record.state != .unknown && Date().timeIntervalSince(record.updatedAt) < staleAfterSeconds {
                report(
                    "\(record.id): \(record.state.rawValue), updated \(Int(Date().timeIntervalSince(record.updatedAt))) s ago; left to its coordinator"
                )
                continue
            }
            settled.append(try await reconcile(record))
        }
        return settled
    }

    func reconcile(_ original: MigrationRecord) async throws(CommandFailure) -> MigrationRecord {
        var record = original
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
                    aborted = try await watch(&record, guest: sourceGuest)
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
                if retries > 0 { try? await Task.sleep(for: .milliseconds(500)) }
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
                record.finalStats = try? await moved?.jobStats(completed: true).sample(at: Date())
            case .notOnDestination:
                location = history + "the VM is on \(record.source)"
            case .onBoth, .unclear:
                let why = whereabouts.unclearReason(source: record.source, destination: record.destination) ?? ""
                return try await leaveUnknown(&record, history + why)
            }
        }

        // Settle the reservations the migration holds on the destination.
        if let agent = try hosts.agent(of: record.destination) {
            let held: [Reservation]
            do {
                held = try await agent.reservations().filter { $0.request.owner == record.id && $0.state == .active }
            } catch {
                throw CommandFailure(
                    "cannot ask \(record.destination)'s agent about migration \(record.id): \(error)",
                    exitCode: CommandFailure.unreachable)
            }
            for reservation in held {
                do {
                    let settled =
                        runsOnDestination
                        ? try await agent.commit(reservation.id) : try await agent.release(reservation.id)
                    record.intents.append(
                        Intent(
                            time: Date(), action: runsOnDestination ? .commit : .release,
                            details: ["reservation": reservation.id]))
                    record.reservation = ReservationReference(
                        host: record.destination, id: settled.id, devices: settled.devices, state: settled.state)
                } catch {
                    throw CommandFailure(
                        "cannot settle reservation \(reservation.id) of migration \(record.id): \(error)",
                        exitCode: CommandFailure.unreachable)
                }
            }
        }

        // The VM runs on the destination: give back what it left on the source.
        var details: [String: String] = [:]
        if runsOnDestination,
            let listed = record.intents.last(where: { $0.action == .startMigration })?.details[
                SourceVGPURelease.detailKey]
        {
            let agent = (try? hosts.agent(of: record.source)) ?? nil
            let released = await SourceVGPURelease(agent: agent, hostName: record.source).run(
                sources: SourceVGPURelease.decode(listed)
            ) { id in
                record.intents.append(Intent(time: Date(), action: .releaseSource, details: ["reservation": id]))
                try await store.save(record)
            }
            if !released.summary.isEmpty { details["source_vgpu"] = released.summary }
        }

        let outcome: MigrationState = runsOnDestination ? .completed : .failed
        let reason = "reconciled after the coordinator stopped in \(record.state.rawValue): \(location)"
        do {
            if record.state != .unknown {
                try record.transition(to: .unknown, reason: "the coordinator stopped; outcome unknown", at: Date())
            }
            try record.transition(to: outcome, reason: reason, details: details, at: Date())
        } catch {
            throw CommandFailure("migration \(record.id): \(error)")
        }
        do {
            try await store.save(record)
        } catch {
            throw CommandFailure("cannot record the outcome of \(record.id): \(error)")
        }
        report("\(record.id): \(outcome.rawValue) (\(reason))")
        return record
    }

    /// Waits (up to a minute) until the domain has no migration job.
    private func waitForJobEnd(_ guest: any HypervisorDomain) async {
        for _ in 0..<300 {
            guard let stats = try? await guest.jobStats(), stats.isActive else { return }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// Keeps a record whose VM cannot be placed `unknown`, with its reservation untouched, for a
    /// later reconcile to settle once both hosts answer.
    private func leaveUnknown(_ record: inout MigrationRecord, _ why: String) async throws(CommandFailure)
        -> MigrationRecord
    {
        let reason =
            "cannot tell where the VM runs: \(why); nothing committed or released; "
            + "run 'vgpu-migrate reconcile' again once both hosts answer"
        do {
            if record.state != .unknown {
                try record.transition(to: .unknown, reason: reason, at: Date())
            }
            try await store.save(record)
        } catch {
            throw CommandFailure("cannot record the state of \(record.id): \(error)")
        }
        report("\(record.id): unknown (\(reason))")
        return record
    }

    /// Watches a migration job whose coordinator is gone until it ends, recording samples and
    /// applying the record's policy (new downtime limits, timeouts); returns whether it aborted
    /// the job.
    private func watch(_ record: inout MigrationRecord, guest: any HypervisorDomain) async throws(CommandFailure)
        -> Bool
    {
        let policy = policyNamed(record.policy)
        report(
            "\(record.id): its migration job is still running; watching it"
                + (policy == nil
                    ? " (policy \(record.policy) not found: no new limits)" : " under policy \(record.policy)"))
        let started = record.intents.last { $0.action == .startMigration }?.time ?? record.createdAt
        let memory = ((try? await guest.xml()).flatMap { try? GuestDomain.parse(xml: $0) })?.memoryBytes ?? 0
        var controller = policy.map {
            DowntimeController(policy: $0, memoryBytes: memory, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        }
        let interval = policy?.monitorIntervalMilliseconds ?? 1000
        var aborted = false
        while let stats = try? await guest.jobStats(), stats.isActive {
            let sample = stats.sample(at: Date())
            record.record(sample: sample)
            let applied = record.downtimeSteps.last?.milliseconds ?? 0
            switch controller?.decide(elapsedSeconds: Date().timeIntervalSince(started), sample: sample) {
            case .raise(let ms, let reason)?, .forceSwitchover(let ms, let reason)?:
                if ms > applied {
                    try? await guest.setMaxDowntime(milliseconds: UInt64(ms))
                    record.downtimeSteps.append(DowntimeStep(time: Date(), milliseconds: ms, reason: reason))
                    report("\(record.id): downtime limit \(ms) ms: \(reason)")
                }
            case .abort(let reason)?:
                if !aborted {
                    record.intents.append(Intent(time: Date(), action: .abort, details: ["reason": reason]))
                    report("\(record.id): aborting: \(reason)")
                    try? await guest.abortJob()
                    aborted = true
                }
            case .keep?, nil:
                break
            }
            do {
                try await store.save(record)
            } catch {
                throw CommandFailure("cannot record the progress of \(record.id): \(error)")
            }
            try? await Task.sleep(for: .milliseconds(interval))
        }
        return aborted
    }

    /// The host's hypervisor, or nil (and a line saying why) when it does not answer; an
    /// inventory that gives no way to reach it is an error.
    private func reachable(_ host: String) async throws(CommandFailure) -> (any Hypervisor)? {
        do {
            return try await hosts.hypervisor(of: host)
        } catch  where error.exitCode == CommandFailure.unreachable {
            report("\(host) does not answer: \(error.message)")
            return nil
        }
    }
}

/// How the coordinator reaches a host by its inventory name: its hypervisor and its agent.
protocol HostDirectory: Sendable {
    /// The host's hypervisor; fails when the inventory gives no way to reach it, or it does not answer.
    func hypervisor(of host: String) async throws(CommandFailure) -> any Hypervisor
    /// The host's agent; nil when the inventory gives it none.
    func agent(of host: String) throws(CommandFailure) -> (any HostAgent)?
}

/// The hosts of the inventory: libvirt at `libvirt_uri`, the agent at `agent_url`.
struct InventoryHosts: HostDirectory {
    var inventory: HostInventoryConfig
    var loader: HostFactsLoader

    func hypervisor(of host: String) async throws(CommandFailure) -> any Hypervisor {
        guard let uri = inventory.host(named: host)?.libvirtURI else {
            throw CommandFailure(
                "host \(host) has no libvirt_uri in the inventory: cannot tell where the VM runs",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            return try await LibvirtConnection.open(uri: uri)
        } catch {
            throw CommandFailure(
                "cannot reach host \(host) through libvirt: \(error)", exitCode: CommandFailure.unreachable)
        }
    }

    func agent(of host: String) throws(CommandFailure) -> (any HostAgent)? {
        guard let entry = inventory.host(named: host), entry.agentURL != nil else { return nil }
        return try loader.agentClient(entry, label: "host \(host)")
    }
}

/// `vgpu-migrate reconcile`: settles migrations left unfinished by a coordinator that stopped.
struct ReconcileCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reconcile",
        abstract: "Settle migrations left unfinished by a coordinator that stopped (also run before each migrate).",
        discussion: """
            For each migration not in a terminal state: a migration job still running is watched to its end \
            under the migration's policy (or aborted with --abort-running); then, if the VM runs on the \
            destination (and not on the source) the record ends completed and its reservation is committed; \
            if it does not run on the destination it ends failed and its reservation is released. When that \
            cannot be told (a host does not answer, or the VM runs on both) the record stays unknown with \
            nothing committed or released, and the exit code is 3. Exit 0 when everything was settled.
            """
    )

    @OptionGroup var inventoryFile: InventoryOption
    @OptionGroup var policies: PolicyDirectoryOption
    @OptionGroup var database: DatabaseOption
    @Option(
        name: .customLong("stale-after"), help: "Seconds without an update after which a migration counts as abandoned."
    )
    var staleAfter = 60.0
    @Flag(
        name: .customLong("abort-running"),
        help: "Abort migration jobs still running instead of watching them to their end.")
    var abortRunning = false
    @Flag(name: .customLong("json"), help: "Print the settled records as JSON.") var json = false

    func validate() throws {
        if !(0...86_400).contains(staleAfter) {
            throw ValidationError("--stale-after must be between 0 and 86400 seconds")
        }
    }

    func run() async throws {
        let store = try await database.open()
        let inventory = try inventoryFile.load()
        let directory = try PolicyDirectory.locate(explicit: policies.policies)
        let reconciler = Reconciler(
            store: store,
            hosts: InventoryHosts(
                inventory: inventory,
                loader: try inventoryFile.factsLoader(catalog: try PolicyDirectory.boardCatalog(in: directory))),
            staleAfterSeconds: staleAfter, abortRunningJobs: abortRunning,
            policyNamed: { name in try? policies.load(name).0 },
            report: { line in
                if !json {
                    print(line)
                    fflush(nil)
                }
            })
        let settled = try await reconciler.reconcileAll()
        if json {
            print(try HistoryText.json(settled))
        } else if settled.isEmpty {
            print("Nothing to reconcile.")
        }
        let unsettled = settled.filter { !$0.state.isTerminal }.map(\.id)
        if !unsettled.isEmpty {
            throw CommandFailure(
                "not settled, left unknown: \(unsettled.joined(separator: ", "))",
                remedy: "run 'vgpu-migrate reconcile' again once their hosts answer",
                exitCode: CommandFailure.unreachable)
        }
    }
}
