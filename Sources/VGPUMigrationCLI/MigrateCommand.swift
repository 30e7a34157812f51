import ArgumentParser
import Foundation
import Logging
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUMigrationLibvirt
import VGPUPolicies

/// `vgpu-migrate migrate`: check, reserve, migrate with the policy's downtime schedule, record.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Live-migrate a VM: check, reserve the destination vGPU, migrate with downtime stepping, record.",
        discussion: """
            Runs the pre-flight check first and refuses on failures unless --force names them \
            (--force driver.version,gpu.dirty-tracking). Every step is a transition in the history \
            ('vgpu-migrate show ID'). On failure or abort the destination reservation is released and the \
            VM stays on the source. On a terminal the progress is one line redrawn in place and Ctrl-C asks \
            whether to abort; otherwise progress is logged line by line and Ctrl-C (SIGINT) aborts. Exit \
            codes: 0 completed, 1 failed or cancelled, 2 usage or configuration error, 3 a host could not \
            be reached.
            """
    )

    @Argument(help: "The VM (libvirt domain name).") var vm: String
    @Option(name: .customLong("from"), help: ArgumentHelp("Source host (inventory name).", valueName: "host"))
    var source: String
    @Option(name: .customLong("to"), help: ArgumentHelp("Destination host (inventory name).", valueName: "host"))
    var destination: String
    @Option(name: .customLong("policy"), help: ArgumentHelp("Policy name.", valueName: "name")) var policyName =
        MigrationPolicyFile.defaultName
    @OptionGroup var policies: PolicyDirectoryOption
    @OptionGroup var inventoryFile: InventoryOption
    @OptionGroup var database: DatabaseOption
    @Option(
        name: .customLong("force"), help: ArgumentHelp("Failing checks to accept, comma-separated.", valueName: "ids"))
    var force: String?
    @Flag(name: .customLong("json"), help: "Print the final record as JSON (progress goes to standard error).")
    var json = false
    @Option(
        name: .customLong("history-patience"),
        help: ArgumentHelp(
            "Seconds the final record is tried in a history store that stopped answering before it is left in the local journal.",
            valueName: "seconds"))
    var historyPatience = 30.0

    /// Names a point where the coordinator stops and waits to be killed, for crash tests: a state
    /// (`requested`, `checking`, `reserving`, `migrating`, `completing`) just entered, or
    /// `reserved` (the destination agent reserved, the record does not say so yet).
    static let pauseVariable = "VGPU_MIGRATE_TEST_PAUSE"

    func validate() throws {
        if source == destination { throw ValidationError("--from and --to name the same host") }
        if !(0...3600).contains(historyPatience) {
            throw ValidationError("--history-patience must be between 0 and 3600 seconds")
        }
        if !policyName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("--policy takes a policy name such as adaptive")
        }
    }

    func run() async throws {
        // The hosts are reached through libvirt: its library loads while the files are read.
        LibvirtConnection.loadLibraryInBackground()
        let display = ProgressDisplay(json: json)
        // Every line the engine said is printed before the outcome.
        let record = try await MigrationEventText.showing(on: display) { events in
            try await migrate(events: events, display: display)
        }
        if json { print(try HistoryText.json(record)) }
        if record.state != .completed { throw ExitCode(CommandFailure.failed) }
    }

    private func migrate(events: MigrationEventSink, display: ProgressDisplay) async throws -> MigrationRecord {
        let interrupt = OperatorInterrupt()
        interrupt.install(display: display) { [vm, source] in "the migration of \(vm) from \(source)" }
        return try await InventoryMigration(
            policies: policies, inventoryFile: inventoryFile, database: database, policyName: policyName,
            forcedChecks: Set(
                (force ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }),
            historyPatience: historyPatience
        ).run(
            vm: vm, from: source, to: destination, events: events, abort: interrupt.abort,
            pauseAt: ProcessInfo.processInfo.environment[Self.pauseVariable])
    }
}

/// One migration between two inventory hosts as `migrate` runs it: an earlier migration of the
/// VM left unsettled is settled first, then the engine's ``MigrationRun``. `drain` runs one for
/// each of its moves.
struct InventoryMigration: Sendable {
    var policies: PolicyDirectoryOption
    var inventoryFile: InventoryOption
    var database: DatabaseOption
    var policyName: String
    var forcedChecks: Set<String> = []
    var historyPatience = 30.0

    func run(
        vm: String, from source: String, to destination: String, events: MigrationEventSink,
        abort: AbortRequest? = nil, pauseAt: String? = nil, prefer: [DeviceAddress] = []
    ) async throws -> MigrationRecord {
        let (policy, file) = try policies.load(policyName)
        let directory = file.deletingLastPathComponent()
        let catalog = try PolicyDirectory.boardCatalog(in: directory)
        let inventory = try inventoryFile.load()
        let loader = try inventoryFile.factsLoader(catalog: catalog)
        let sourceHost = try InventoryAccess.host(source, in: inventory)
        let destinationHost = try InventoryAccess.host(destination, in: inventory)
        // The hosts' facts are read while the history is opened and an earlier migration of the
        // VM is settled; they are the hosts' own, whatever that settling does to the VM.
        async let loadingSource = loader.load(sourceHost)
        async let loadingDestination = loader.load(destinationHost)
        let store = try await database.open()
        let journal = try database.journal()
        let logger = Logger(label: "vgpu-migrate.engine")
        // A migration of this VM abandoned by a coordinator that stopped is settled first.
        let earlier: [MigrationRecord]
        do {
            earlier = try await Reconciler(
                store: store, journal: journal, hosts: InventoryHosts(inventory: inventory, loader: loader),
                staleAfterSeconds: 60, policyNamed: { [policies] name in try? policies.load(name).0 },
                events: events, logger: logger
            ).reconcileAll(vm: vm)
        } catch {
            throw CommandFailure(error)
        }
        if let unsettled = earlier.first(where: { !$0.state.isTerminal }) {
            throw CommandFailure(
                "an earlier migration of \(vm), \(unsettled.id), has no clear outcome: "
                    + (unsettled.events.last?.reason ?? "unknown"),
                remedy: "run 'vgpu-migrate reconcile' once \(unsettled.source) and \(unsettled.destination) answer",
                exitCode: CommandFailure.unreachable)
        }
        let (sourceFacts, destinationFacts) = try await (loadingSource, loadingDestination)
        let agent =
            destinationHost.agentURL == nil
            ? nil : try loader.agentClient(destinationHost, label: "host \(destination)")
        let sourceAgent =
            sourceHost.agentURL == nil ? nil : try loader.agentClient(sourceHost, label: "host \(source)")
        var run = MigrationRun(
            store: store, journal: journal,
            source: MigrationHost(
                name: sourceFacts.name, facts: sourceFacts.facts, hypervisor: sourceFacts.connection,
                agent: sourceAgent),
            destination: MigrationHost(
                name: destinationFacts.name, facts: destinationFacts.facts,
                hypervisor: destinationFacts.connection, agent: agent, libvirtURI: destinationHost.libvirtURI,
                migrationAddress: destinationHost.migrationAddress),
            policy: policy, vm: vm, bandwidthMiBPerSecond: inventory.bandwidth(from: source, to: destination),
            forcedChecks: forcedChecks, events: events, abort: abort, pauseAt: pauseAt,
            historyPatience: .milliseconds(Int64(historyPatience * 1000)), logger: logger)
        run.preferredDevices = prefer
        do {
            return try await run.run()
        } catch {
            throw CommandFailure(error)
        }
    }
}

/// `vgpu-migrate abort ID`: aborts a running migration; it ends `cancelled`, the VM stays on the source.
struct AbortCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Abort a running migration (from another shell); it ends cancelled and the VM stays on the source."
    )

    @Argument(help: "Migration id, or a unique prefix of it.") var id: String
    @OptionGroup var inventoryFile: InventoryOption
    @OptionGroup var database: DatabaseOption

    func validate() throws {
        try HistoryText.validateMigrationID(id)
    }

    func run() async throws {
        let record = try await database.migration(id, in: try await database.open())
        guard record.state == .migrating else {
            throw CommandFailure(
                "migration \(record.id) is \(record.state.rawValue), not migrating: there is no migration job to abort")
        }
        let inventory = try inventoryFile.load()
        let host = try InventoryAccess.host(record.source, in: inventory)
        guard let uri = host.libvirtURI else {
            throw CommandFailure(
                "host \(record.source) has no libvirt_uri in the inventory",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            let connection = try await LibvirtConnection.open(uri: uri)
            guard let guest = try await connection.lookupDomain(record.vm) else {
                throw CommandFailure("VM \(record.vm) is no longer on \(record.source)")
            }
            try await guest.abortJob()
        } catch let failure as CommandFailure {
            throw failure
        } catch {
            throw CommandFailure("cannot abort on \(record.source): \(error)", exitCode: CommandFailure.unreachable)
        }
        print("abort requested for migration \(record.id) (\(record.vm) on \(record.source)); it ends cancelled")
    }
}
