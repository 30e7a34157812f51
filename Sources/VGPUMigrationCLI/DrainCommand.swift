import ArgumentParser
import Foundation
import Logging
import Synchronization
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUMigrationLibvirt
import VGPUPolicies

/// `vgpu-migrate drain HOST`: plans where every running VM of a host goes, all together.
struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract:
            "Empty a host: plan a destination for every running VM at once, with capacity booked across the plan.",
        discussion: """
            Cordons HOST, plans a destination for every running VM of it (listed through its libvirt) \
            together, records the drain in the history and runs the moves, each a normal recorded migration. \
            Each move passes every rule of 'check' against the destination as the moves planned before it \
            leave it, so two VMs never aim at one free vGPU slot and a VM never takes an empty GPU that \
            another vGPU size needed; VMs that cannot be placed are named with the reasons. Destinations are \
            --to's hosts, or every other inventory host (--to auto), without the cordoned ones. At most \
            --parallel moves run at once, and per host max_outbound_migrations and max_inbound_migrations \
            of the inventory (default 2 each, as KubeVirt's). A VM whose migration fails and stays on the \
            host is tried once more on its next-best destination. The host stays cordoned at the end.

            --dry-run prints the plan (each VM's destination and GPU, the estimated downtime and time, and \
            the expected drain time) and changes nothing. --resume ID takes up a drain whose coordinator \
            stopped: its unfinished migrations are settled, the VMs still on the host planned again and \
            moved. Exit codes: 0 every VM left the host (with --dry-run: every VM has a destination), 1 some \
            stay (named), 2 usage or configuration error, 3 the host could not be reached.
            """
    )

    @Argument(help: "The host to empty (inventory name).") var host: String?
    @Option(
        name: .customLong("resume"),
        help: ArgumentHelp("Take up a drain whose coordinator stopped (its id, or a unique prefix).", valueName: "id"))
    var resume: String?
    @Option(name: .customLong("reason"), help: ArgumentHelp("Why, for the cordon.", valueName: "text"))
    var reason = "drain"
    @Option(
        name: .customLong("to"),
        help: ArgumentHelp(
            "Destination hosts, comma-separated, or 'auto' for every other host.", valueName: "hosts|auto"))
    var destinations = "auto"
    @Option(name: .customLong("parallel"), help: ArgumentHelp("Migrations at once in all.", valueName: "n"))
    var parallel = DrainLimits.defaultParallel
    @Option(name: .customLong("policy"), help: ArgumentHelp("Policy name.", valueName: "name")) var policyName =
        MigrationPolicyFile.defaultName
    @OptionGroup var policies: PolicyDirectoryOption
    @OptionGroup var inventoryFile: InventoryOption
    @OptionGroup var database: DatabaseOption
    @Flag(name: .customLong("dry-run"), help: "Print the plan and change nothing.") var dryRun = false
    @Flag(name: .customLong("json"), help: "Print JSON (the plan, or the drain's record at its end).") var json = false
    @Option(
        name: .customLong("history-patience"),
        help: ArgumentHelp(
            "Seconds a migration's final record is tried in a history store that stopped answering.",
            valueName: "seconds"))
    var historyPatience = 30.0

    /// For crash tests: after this many moves have ended, the drain stops and waits to be killed.
    static let pauseVariable = "VGPU_MIGRATE_TEST_DRAIN_PAUSE_AFTER"

    func validate() throws {
        if (host == nil) == (resume == nil) { throw ValidationError("give HOST to drain, or --resume ID") }
        if resume != nil && dryRun { throw ValidationError("--resume runs a drain; drop --dry-run") }
        if let resume { try HistoryText.validateMigrationID(resume, of: "drain") }
        if !(1...64).contains(parallel) { throw ValidationError("--parallel must be between 1 and 64") }
        if !policyName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("--policy takes a policy name such as adaptive")
        }
        if let host, destinationNames?.contains(host) == true {
            throw ValidationError("--to names \(host), the host to empty")
        }
        if destinationNames?.isEmpty == true { throw ValidationError("--to takes host names or 'auto'") }
    }

    /// `--to`'s hosts; nil for `auto`.
    var destinationNames: [String]? {
        guard destinations != "auto" else { return nil }
        return destinations.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        LibvirtConnection.loadLibraryInBackground()
        let context = try await DrainContext(command: self)
        if let resume {
            try await resumeDrain(resume, context: context)
            return
        }
        let host = host!
        let facts = try await context.gather(host: host, destinations: destinationNames)
        var plan = DrainPlanner.plan(facts.problem(policy: context.policy.checks, inventory: context.inventory))
        plan.unplaced = (plan.unplaced + facts.unreadable).sorted { $0.vm < $1.vm }
        let limits = context.inventory.drainLimits(parallel: parallel)
        let report = DrainPlanReport(
            host: host, parallel: parallel, outboundLimit: limits.outbound(host),
            expectedSeconds: DrainSchedule.expectedSeconds(plan, limits: limits), plan: plan)
        guard !dryRun else {
            if json {
                print(try HistoryText.json(report))
            } else {
                print(DrainPlanText.plan(report, limits: limits) + "Dry run: nothing was cordoned or moved.")
            }
            if !plan.unplaced.isEmpty { throw ExitCode(CommandFailure.failed) }
            return
        }
        if !json { Self.say(String(DrainPlanText.plan(report, limits: limits).dropLast())) }
        let store = try await database.open()
        try await cordon(host, in: store)
        let drain = DrainRecord(
            id: UUID().uuidString.lowercased(), host: host, policy: context.policy.name, parallel: parallel,
            at: Date(), plan: plan)
        let ended = try await run(drain, placements: plan.placements, context: context, store: store)
        try finish(ended)
    }

    /// Takes up a drain whose coordinator stopped: its migrations left unfinished are settled
    /// as `reconcile` does, moves that ended stay, and the VMs still on the host are planned
    /// again on current facts.
    func resumeDrain(_ id: String, context: DrainContext) async throws {
        let store = try await database.open()
        let found: DrainRecord?
        do {
            found = try await store.drain(id: id)
        } catch {
            throw CommandFailure("\(error)")
        }
        guard var drain = found else {
            throw CommandFailure(
                "no drain \(id) in the history", remedy: "'vgpu-migrate history --drains' lists them",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        guard drain.state == .running else {
            Self.say("drain \(drain.id) of \(drain.host) already ended \(drain.state.rawValue)")
            try finish(drain)
            return
        }
        try await cordon(drain.host, in: store)
        // Migrations the stopped coordinator left are settled first.
        let reconciler = Reconciler(
            store: store, journal: try database.journal(),
            hosts: InventoryHosts(inventory: context.inventory, loader: context.loader), staleAfterSeconds: 0,
            policyNamed: { [policies] name in try? policies.load(name).0 },
            events: MigrationEventSink { event in
                if case .settled(let migration, let state, let reason) = event {
                    Self.say("settled migration \(migration): \(state.rawValue) (\(reason))")
                }
            }, logger: Logger(label: "vgpu-migrate.engine"))
        for move in drain.moves where move.state == .migrating {
            do {
                _ = try await reconciler.reconcileAll(vm: move.vm)
            } catch {
                throw CommandFailure(error)
            }
        }
        let facts = try await context.gather(host: drain.host, destinations: nil)
        let onHost = Set(facts.guests.map(\.name))
        for move in drain.moves where move.state == .migrating || move.state == .pending {
            guard !onHost.contains(move.vm) else { continue }
            // Gone from the host: moved when its last migration completed.
            var settled = move
            var last: MigrationRecord?
            if let id = move.migrations.last { last = try? await store.record(id: id) }
            if last?.state == .completed {
                settled.state = .moved
                settled.destination = last?.destination ?? move.destination
            } else {
                settled.state = .failed
                settled.reason = "no longer running on \(drain.host), and no migration of this drain moved it"
            }
            drain.update(settled, at: Date())
        }
        var plan = DrainPlanner.plan(facts.problem(policy: context.policy.checks, inventory: context.inventory))
        plan.unplaced = (plan.unplaced + facts.unreadable).sorted { $0.vm < $1.vm }
        for refusal in plan.unplaced {
            drain.update(
                .init(vm: refusal.vm, destination: nil, state: .unplaced, reason: refusal.reasons.first), at: Date())
        }
        let ended = try await run(
            drain, placements: plan.placements, context: context, store: store, resumed: true)
        try finish(ended)
    }

    func cordon(_ host: String, in store: any HistoryStore) async throws {
        let (cordon, created) = try await CordonText.cordon(
            host, reason: reason, in: store, remedy: "nothing was moved; check --database")
        if !json {
            Self.say(
                created
                    ? "cordoned \(host): no migration goes there" : "\(host) stays cordoned: \(CordonText.line(cordon))"
            )
        }
    }

    func run(
        _ drain: DrainRecord, placements: [DrainPlan.Placement], context: DrainContext, store: any HistoryStore,
        resumed: Bool = false
    ) async throws -> DrainRecord {
        let migration = InventoryMigration(
            policies: policies, inventoryFile: inventoryFile, database: database, policyName: policyName,
            historyPatience: historyPatience)
        let host = drain.host
        let destinations = destinationNames
        let view = DrainProgressView(display: ProgressDisplay(json: json, quiet: json))
        let run = DrainRun(
            store: store, limits: context.inventory.drainLimits(parallel: parallel),
            migrate: { placement, began in
                let events = MigrationEventSink { event in
                    switch event {
                    case .began(let id, _, _, _, _): began(id)
                    case .progress(_, let sample, _): view.sent(placement.vm, sample)
                    case .hostUnreachable(_, let text): view.line("  \(placement.vm): \(text)")
                    case .historyStoreUnavailable(_, let message, _):
                        view.line("  \(placement.vm): the history store failed: \(message)")
                    default: break
                    }
                }
                do {
                    return .ran(
                        try await migration.run(
                            vm: placement.vm, from: placement.source, to: placement.destination, events: events,
                            prefer: placement.vgpus.map(\.function)))
                } catch let failure as CommandFailure {
                    return .didNotBegin(
                        MigrationEngineError(
                            failure.exitCode == CommandFailure.unreachable ? .unreachable : .failed, failure.message,
                            remedy: failure.remedy))
                } catch {
                    return .didNotBegin(MigrationEngineError(.failed, "\(error)"))
                }
            },
            replace: { vm, excluding in
                // The VM's next-best destination on the hosts' facts as they are now.
                guard let facts = try? await context.gather(host: host, destinations: destinations) else { return nil }
                var problem = facts.problem(policy: context.policy.checks, inventory: context.inventory)
                problem.guests = problem.guests.filter { $0.name == vm }
                problem.destinations = problem.destinations.filter { !excluding.contains($0.name) }
                return DrainPlanner.plan(problem).placement(of: vm)
            },
            events: { event in view.show(event) },
            pauseAfterMoves: ProcessInfo.processInfo.environment[Self.pauseVariable].flatMap(Int.init))
        defer { view.settle() }
        do {
            return try await run.run(drain, placements: placements, resumed: resumed)
        } catch {
            throw CommandFailure(error)
        }
    }

    /// A line on standard output, written at once: a drain's lines come from several tasks and
    /// are read as they come (a log, a test waiting for one).
    static func say(_ line: String) {
        CommandRunner.writeLine(line, to: STDOUT_FILENO)
    }

    /// Prints the drain's end and exits by it: 0 when the host is empty, 1 when VMs stay.
    func finish(_ drain: DrainRecord) throws {
        Self.say(json ? try HistoryText.json(drain) : DrainEventText.summary(drain))
        if drain.state != .completed { throw ExitCode(CommandFailure.failed) }
    }
}

/// A drain as it runs: each event a line; on a terminal also one line redrawn in place with the
/// moves done, running (each with how much of it is sent) and left.
final class DrainProgressView: Sendable {
    private let display: ProgressDisplay
    /// Moves done and left, and the running ones in the order they started, with % sent.
    private let state = Mutex((done: 0, left: 0, running: [(vm: String, percent: Int)]()))

    init(display: ProgressDisplay) {
        self.display = display
    }

    func line(_ text: String) {
        display.line(text)
    }

    /// The redrawn line taken away (at the drain's end).
    func settle() {
        display.settle()
    }

    func show(_ event: DrainEvent) {
        switch event {
        case .progress(let done, _, let left):
            state.withLock { state in
                state.done = done
                state.left = left
            }
            if display.isInteractive { redraw() } else { display.line(DrainEventText.line(event)) }
        case .moveStarted(let vm, _, _):
            state.withLock { $0.running.append((vm, 0)) }
            display.line(DrainEventText.line(event))
        case .moveEnded(let vm, _, _, _, _, _, _):
            state.withLock { $0.running.removeAll { $0.vm == vm } }
            display.line(DrainEventText.line(event))
        default:
            display.line(DrainEventText.line(event))
        }
    }

    /// A migration's sample: on a terminal, how much of the VM is sent.
    func sent(_ vm: String, _ sample: JobSample) {
        guard display.isInteractive else { return }
        let percent = MigrationEventText.percentSent(sample)
        state.withLock { state in
            if let index = state.running.firstIndex(where: { $0.vm == vm }) { state.running[index].percent = percent }
        }
        redraw()
    }

    private func redraw() {
        let text = state.withLock { state in
            let running = state.running.map { "\($0.vm) \($0.percent)%" }.joined(separator: ", ")
            return "drain: \(state.done) done, \(state.running.count) running"
                + (running.isEmpty ? "" : " (\(running))") + ", \(state.left) left"
        }
        display.progress(text)
    }
}

/// What every drain command reads first: the policy, the board table, the inventory.
struct DrainContext: Sendable {
    var policy: MigrationPolicy
    var inventory: HostInventoryConfig
    var loader: HostFactsLoader
    var cordons: [HostCordon]

    init(command: DrainCommand) async throws {
        let (policy, file) = try command.policies.load(command.policyName)
        self.policy = policy
        let catalog = try PolicyDirectory.boardCatalog(in: file.deletingLastPathComponent())
        inventory = try command.inventoryFile.load()
        loader = try command.inventoryFile.factsLoader(catalog: catalog)
        cordons = await command.database.cordons(otherwise: "planning onto every host asked for")
    }

    func gather(host: String, destinations: [String]?) async throws(CommandFailure) -> DrainFacts {
        try await DrainFacts.gather(
            host: host, destinations: destinations, inventory: inventory, loader: loader, cordons: cordons)
    }
}

/// A drain's events and end as lines.
enum DrainEventText {
    static func line(_ event: DrainEvent) -> String {
        switch event {
        case .began(let drain, let host, let moves, let resumed):
            return
                "drain \(drain) of \(host)\(resumed ? " taken up again" : ""): \(moves) move\(moves == 1 ? "" : "s") to run"
        case .moveStarted(let vm, let destination, let attempt):
            return "\(vm) → \(destination): migrating" + (attempt > 1 ? " (second attempt)" : "")
        case .moveEnded(let vm, let destination, let state, let migration, let downtime, let seconds, let reason):
            var line = "\(vm) → \(destination): \(state.rawValue)"
            if state == .completed {
                line += " in \(CompatibilityRules.seconds(seconds))"
                if let downtime { line += ", downtime \(downtime) ms" }
            } else if let reason {
                line += ": \(reason)"
            }
            return line + (migration.map { " (migration \($0.prefix(8)))" } ?? "")
        case .retrying(let vm, let failedOn, let next):
            return "\(vm): failed on \(failedOn), trying \(next)"
        case .progress(let done, let running, let left):
            return "[\(done) done, \(running) running, \(left) left]"
        case .historyStoreUnavailable(let message):
            return "warning: the drain could not be saved in the history store (\(message)); it goes on"
        case .paused(let moves):
            return "paused after \(moves) moves (\(DrainCommand.pauseVariable))"
        }
    }

    static func summary(_ drain: DrainRecord) -> String {
        let moved = drain.moves.filter { $0.state == .moved }.count
        var out =
            "Drain \(drain.id) of \(drain.host): \(drain.state.rawValue), \(moved) of \(drain.moves.count) VMs moved"
        for move in drain.moves where move.state != .moved {
            out +=
                "\n  \(move.vm) stays on \(drain.host): \(move.state.rawValue)" + (move.reason.map { ": \($0)" } ?? "")
        }
        if drain.state == .completed {
            out +=
                "\n\(drain.host) is empty and stays cordoned: 'vgpu-migrate uncordon \(drain.host)' after its maintenance"
        }
        return out
    }
}

/// What a drain plan is made from, as read from the hosts: the drained host's running VMs and
/// facts, each destination's facts (or why it cannot be used), and libvirt's CPU comparisons.
struct DrainFacts: Sendable {
    var source: LoadedHost
    var guests: [DrainGuest]
    /// VMs whose XML could not be read, as refusals.
    var unreadable: [DrainPlan.Refusal]
    var destinations: [DrainDestination]
    /// libvirt's CPU comparison by destination, then VM.
    var cpu: [String: [String: CheckSubject.CPUComparison]]

    /// How many hosts are read at once.
    static let concurrentReads = 16

    static func gather(
        host: String, destinations names: [String]?, inventory: HostInventoryConfig, loader: HostFactsLoader,
        cordons: [HostCordon]
    ) async throws(CommandFailure) -> DrainFacts {
        let sourceEntry = try InventoryAccess.host(host, in: inventory)
        let wanted =
            try names.map { names throws(CommandFailure) in
                try names.map { name throws(CommandFailure) in try InventoryAccess.host(name, in: inventory) }
            } ?? inventory.hosts.filter { $0.name != host }
        guard let uri = sourceEntry.libvirtURI else {
            throw CommandFailure(
                "host \(host) has no libvirt_uri in the inventory: its running VMs cannot be listed",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        let source = try await loader.load(sourceEntry)
        let running: [(name: String, xml: String)]
        do {
            // The facts may come from a snapshot or the agent; the VMs always come from libvirt.
            let connection: LibvirtConnection
            if let open = source.connection {
                connection = open
            } else {
                connection = try await LibvirtConnection.open(uri: uri)
            }
            running = try await connection.runningDomains()
        } catch {
            throw CommandFailure(
                "cannot list the VMs of \(host): \(error)", exitCode: CommandFailure.unreachable)
        }
        var guests: [DrainGuest] = []
        var unreadable: [DrainPlan.Refusal] = []
        for domain in running {
            do {
                guests.append(
                    DrainGuest(name: domain.name, source: host, domain: try GuestDomain.parse(xml: domain.xml)))
            } catch {
                unreadable.append(
                    .init(vm: domain.name, source: host, reasons: ["libvirt's XML cannot be read: \(error)"]))
            }
        }

        // The destinations are read a few at a time; a host that cannot be read is left out with why.
        let cordoned = Dictionary(cordons.map { ($0.host, $0) }, uniquingKeysWith: { first, _ in first })
        let toLoad = wanted.filter { cordoned[$0.name] == nil }
        let results = await toLoad.concurrentMap(limit: concurrentReads) { entry in
            do throws(CommandFailure) {
                return Result<LoadedHost, CommandFailure>.success(try await loader.load(entry))
            } catch {
                return .failure(error)
            }
        }
        let loaded = Dictionary(zip(toLoad.map(\.name), results), uniquingKeysWith: { first, _ in first })
        var destinations: [DrainDestination] = []
        var cpu: [String: [String: CheckSubject.CPUComparison]] = [:]
        for entry in wanted {
            if let cordon = cordoned[entry.name] {
                destinations.append(.init(name: entry.name, status: .cordoned(CordonText.reason(cordon))))
                continue
            }
            switch loaded[entry.name] {
            case .success(let destination):
                destinations.append(.init(name: entry.name, status: .ready(destination.facts)))
                cpu[entry.name] = await compareCPUs(guests, on: destination)
            case .failure(let failure):
                destinations.append(.init(name: entry.name, status: .unreachable(failure.message)))
            case nil:
                destinations.append(.init(name: entry.name, status: .unreachable("not read")))
            }
        }
        return DrainFacts(
            source: source, guests: guests, unreadable: unreadable, destinations: destinations, cpu: cpu)
    }

    /// libvirt's comparison of each guest's CPU on `destination`, asked once per distinct CPU.
    static func compareCPUs(_ guests: [DrainGuest], on destination: LoadedHost) async -> [String: CheckSubject
        .CPUComparison]
    {
        var byCPU: [String: CheckSubject.CPUComparison] = [:]
        var result: [String: CheckSubject.CPUComparison] = [:]
        for guest in guests {
            let domain = guest.domain
            let key = [domain.cpuMode ?? "", domain.cpuXML ?? "", domain.architecture ?? "", domain.hypervisorType]
                .joined(separator: "\u{1}")
            if byCPU[key] == nil { byCPU[key] = await CPUComparison.compare(domain: domain, on: destination) }
            result[guest.name] = byCPU[key]
        }
        return result
    }

    func problem(policy: CheckPolicy, inventory: HostInventoryConfig) -> DrainProblem {
        let cpu = self.cpu
        return DrainProblem(
            sources: [source.name: source.facts], guests: guests, destinations: destinations, policy: policy,
            bandwidth: { source, destination in inventory.bandwidth(from: source, to: destination) },
            cpuComparison: { guest, destination in
                cpu[destination]?[guest.name] ?? .notChecked("no libvirt connection to \(destination)")
            })
    }
}

/// `drain --dry-run --json`: the plan and what running it is expected to take.
struct DrainPlanReport: Sendable, Codable {
    var schemaVersion = 1
    var host: String
    var parallel: Int
    /// Migrations at once out of the drained host.
    var outboundLimit: Int
    /// The expected drain time under the limits, from the check's estimates.
    var expectedSeconds: Double
    var plan: DrainPlan

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case host, parallel
        case outboundLimit = "outbound_limit"
        case expectedSeconds = "expected_seconds"
        case plan
    }
}

/// Drain plans as the command prints them.
enum DrainPlanText {
    static func plan(_ report: DrainPlanReport, limits: DrainLimits) -> String {
        let plan = report.plan
        let total = plan.placements.count + plan.unplaced.count
        var out = "Drain plan for \(report.host) (policy \(plan.policy)): \(total) running VM\(total == 1 ? "" : "s"), "
        out += "\(plan.placements.count) placed, \(plan.unplaced.count) cannot be moved\n"
        if !plan.placements.isEmpty {
            var rows: [[String]] = [["VM", "DESTINATION", "vGPU", "GPU", "DOWNTIME", "TIME"]]
            for placement in plan.placements {
                let vgpus = placement.vgpus.isEmpty ? ["-"] : placement.vgpus.map { $0.typeName ?? $0.type }
                let gpus =
                    placement.vgpus.isEmpty
                    ? ["-"]
                    : placement.vgpus.map { $0.gpu == $0.function ? "\($0.gpu)" : "\($0.gpu) VF \($0.function)" }
                rows.append([
                    placement.vm, placement.destination, vgpus.joined(separator: ", "), gpus.joined(separator: ", "),
                    placement.estimate.map { CompatibilityRules.seconds($0.downtimeMilliseconds / 1000) } ?? "-",
                    placement.estimate.map { CompatibilityRules.seconds($0.totalSeconds) } ?? "-",
                ])
            }
            out += InventoryReport.table(rows, rightAligned: [4, 5], indent: "  ")
            // A warning the check gives for several moves is printed once, with its VMs.
            var warnings: [(text: String, vms: [String])] = []
            for placement in plan.placements {
                for warning in placement.warnings {
                    if let index = warnings.firstIndex(where: { $0.text == warning }) {
                        warnings[index].vms.append(placement.vm)
                    } else {
                        warnings.append((warning, [placement.vm]))
                    }
                }
            }
            for warning in warnings {
                out += "  warning (\(warning.vms.joined(separator: ", "))): \(warning.text)\n"
            }
            out += "Expected drain time: \(CompatibilityRules.seconds(report.expectedSeconds))"
            out += " (\(report.parallel) at once, \(report.outboundLimit) out of \(report.host)"
            let inbound = Set(plan.placements.map { limits.inbound($0.destination) })
            out += inbound.count == 1 ? ", \(inbound.first!) into each host)\n" : ", per-host inbound limits)\n"
        }
        if !plan.unplaced.isEmpty {
            out += "Cannot be moved:\n"
            for refusal in plan.unplaced {
                out += "  \(refusal.vm)\n"
                for reason in refusal.reasons { out += "    \(reason)\n" }
            }
        }
        if !plan.skipped.isEmpty {
            out += "Not considered:\n"
            for skipped in plan.skipped { out += "  \(skipped.host): \(skipped.reason)\n" }
        }
        return out
    }
}
