import ArgumentParser
import Foundation
import VGPUAgentClient
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUMigrationLibvirt
import VGPUPolicies

/// The hosts of the inventory: libvirt at `libvirt_uri`, the agent at `agent_url`.
struct InventoryHosts: HostDirectory {
    var inventory: HostInventoryConfig
    var loader: HostFactsLoader

    func hypervisor(of host: String) async throws(MigrationEngineError) -> any Hypervisor {
        guard let uri = inventory.host(named: host)?.libvirtURI else {
            throw MigrationEngineError(
                .configuration, "host \(host) has no libvirt_uri in the inventory: cannot tell where the VM runs")
        }
        do {
            return try await LibvirtConnection.open(uri: uri)
        } catch {
            throw MigrationEngineError(
                .unreachable, "cannot reach host \(host) through libvirt: \(error)", cause: error)
        }
    }

    func agent(of host: String) throws(MigrationEngineError) -> (any HostAgent)? {
        guard let entry = inventory.host(named: host), entry.agentURL != nil else { return nil }
        do {
            return try loader.agentClient(entry, label: "host \(host)")
        } catch {
            throw MigrationEngineError(
                error.exitCode == CommandFailure.unreachable ? .unreachable : .configuration, error.message,
                remedy: error.remedy, cause: error)
        }
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
        let journal = try database.journal()
        let hosts = InventoryHosts(
            inventory: inventory,
            loader: try inventoryFile.factsLoader(catalog: try PolicyDirectory.boardCatalog(in: directory)))
        let display = ProgressDisplay(json: json, quiet: json)
        let settled = try await MigrationEventText.showing(on: display) { events -> [MigrationRecord] in
            do {
                return try await Reconciler(
                    store: store, journal: journal, hosts: hosts, staleAfterSeconds: staleAfter,
                    abortRunningJobs: abortRunning, policyNamed: { [policies] name in try? policies.load(name).0 },
                    events: events
                ).reconcileAll()
            } catch let error as MigrationEngineError {
                throw CommandFailure(error)
            }
        }
        if json {
            print(try HistoryText.json(settled))
        } else if settled.isEmpty {
            print("Nothing to reconcile.")
        }
        // A drain whose coordinator stopped has the rest of its plan to run: reconcile settles
        // its migrations, `drain --resume` goes on with it.
        for drain in (try? await store.drains(limit: 100)) ?? [] where drain.state == .running {
            CommandRunner.writeStandardError(
                "note: drain \(drain.id) of \(drain.host) has not ended: if its coordinator stopped, "
                    + "'vgpu-migrate drain --resume \(drain.id)' goes on with it")
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
