import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationLibvirt
import VGPUPolicies

/// `vgpu-migrate check`: the pre-flight check of one VM from one host to another, or to the
/// best inventory host.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that a VM can be live-migrated, estimate its downtime, or pick a destination.",
        discussion: """
            Every check gives pass, warn or fail with the reason and what to do. Exit codes: 0 compatible \
            (warnings allowed), 1 incompatible, 2 usage or configuration error, 3 a host could not be reached.

            Hosts come from the inventory (--inventory, default /etc/vgpu-migrate/hosts.yaml), or from \
            snapshots written by 'vgpu-migrate inspect --json' (--source-facts, --dest-facts). The VM is \
            looked up through the source's libvirt, or read from --domain-xml.

            --to auto checks every other inventory host and ranks the compatible ones by estimated \
            downtime, then by how well the vGPU packs (GPUs that already carry the same type first).
            """
    )

    @Argument(help: "The VM (libvirt domain name).")
    var vm: String

    @Option(name: .customLong("from"), help: ArgumentHelp("Source host (inventory name).", valueName: "host"))
    var source: String?

    @Option(name: .customLong("to"), help: ArgumentHelp("Destination host, or 'auto'.", valueName: "host|auto"))
    var destination: String?

    @Option(name: .customLong("policy"), help: ArgumentHelp("Policy name (policies/NAME.yaml).", valueName: "name"))
    var policyName: String = MigrationPolicyFile.defaultName

    @OptionGroup var policies: PolicyDirectoryOption

    @OptionGroup var inventoryFile: InventoryOption

    /// The history, for the cordoned hosts `--to auto` leaves out.
    @OptionGroup var database: DatabaseOption

    @Option(
        name: .customLong("source-facts"),
        help: ArgumentHelp("Source host snapshot (inspect --json).", valueName: "file"))
    var sourceFacts: String?

    @Option(
        name: .customLong("dest-facts"),
        help: ArgumentHelp("Destination host snapshot (inspect --json).", valueName: "file"))
    var destinationFacts: String?

    @Option(
        name: .customLong("domain-xml"),
        help: ArgumentHelp("Check this domain XML instead of looking the VM up.", valueName: "file"))
    var domainXML: String?

    @Option(
        name: .customLong("dirty-rate"),
        help: ArgumentHelp("Measured guest dirty rate for the estimate, MiB/s.", valueName: "mib/s"))
    var dirtyRate: Double?

    @Flag(name: .customLong("json"), help: "Print the report as JSON.")
    var json = false

    func validate() throws {
        if source == nil && sourceFacts == nil { throw ValidationError("give --from HOST or --source-facts FILE") }
        if destination == nil && destinationFacts == nil {
            throw ValidationError("give --to HOST|auto or --dest-facts FILE")
        }
        if destination == "auto" && destinationFacts != nil {
            throw ValidationError("--to auto ranks inventory hosts; drop --dest-facts")
        }
        if let dirtyRate, !(dirtyRate >= 0 && dirtyRate < 1_000_000) {
            throw ValidationError("--dirty-rate must be between 0 and 1000000 MiB/s")
        }
        if !policyName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("--policy takes a policy name such as adaptive, not a path")
        }
    }

    func run() async throws {
        let directory = try PolicyDirectory.locate(explicit: policies.policies)
        let catalog = try PolicyDirectory.boardCatalog(in: directory)
        let policy = try PolicyDirectory.policy(named: policyName, in: directory)
        let needsInventory = (source != nil && sourceFacts == nil) || (destination != nil && destinationFacts == nil)
        let inventory = needsInventory ? try loadInventory() : nil
        let loader = try inventoryFile.factsLoader(catalog: catalog)
        let cwd = HostFactsLoader(
            catalog: catalog, baseDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))

        let sourceHost: LoadedHost
        if let sourceFacts {
            sourceHost = try cwd.snapshot(sourceFacts, name: source ?? hostName(ofFacts: sourceFacts))
        } else {
            sourceHost = try await loader.load(try inventoryHost(source!, in: inventory!))
        }
        let (domain, state) = try await guestDomain(on: sourceHost)

        if destination == "auto" {
            let ranking = await rank(
                domain: domain, state: state, source: sourceHost, inventory: inventory!, loader: loader, policy: policy,
                cordons: await database.cordons(otherwise: "ranking every host of the inventory"))
            if json {
                print(try encode(ranking))
            } else {
                print(CheckReportText.ranking(ranking), terminator: "")
            }
            if !ranking.candidates.contains(where: \.compatible) {
                throw ExitCode(CommandFailure.failed)
            }
            return
        }

        let destinationHost: LoadedHost
        if let destinationFacts {
            destinationHost = try cwd.snapshot(
                destinationFacts, name: destination ?? hostName(ofFacts: destinationFacts))
        } else {
            destinationHost = try await loader.load(try inventoryHost(destination!, in: inventory!))
        }
        var report = await check(
            domain: domain, state: state, source: sourceHost, destination: destinationHost,
            bandwidth: inventory?.bandwidth(from: sourceHost.name, to: destinationHost.name), policy: policy)
        // A cordoned destination (host maintenance) takes no migration: `migrate` refuses it.
        if destinationFacts == nil,
            let cordon = await database.cordons(otherwise: "the destination's cordon is not checked").first(where: {
                $0.host == destinationHost.name
            })
        {
            report.findings.append(
                CompatibilityFinding(
                    "host.cordoned", .fail, "\(destinationHost.name) is cordoned (\(CordonText.reason(cordon)))",
                    remedy: "'vgpu-migrate uncordon \(destinationHost.name)' once its maintenance is over, or choose "
                        + "another destination (--to auto)"))
        }
        if json {
            print(try encode(report))
        } else {
            print(CheckReportText.report(report), terminator: "")
        }
        if !report.compatible { throw ExitCode(CommandFailure.failed) }
    }

    // MARK: Inputs

    /// The inventory: whole for `--to auto`, else only the hosts the check reaches.
    func loadInventory() throws(CommandFailure) -> HostInventoryConfig {
        guard destination != "auto" else { return try inventoryFile.load() }
        let names = Set(
            [sourceFacts == nil ? source : nil, destinationFacts == nil ? destination : nil].compactMap { $0 })
        return try inventoryFile.load(only: names)
    }

    func inventoryHost(_ name: String, in inventory: HostInventoryConfig) throws(CommandFailure) -> InventoryHost {
        try InventoryAccess.host(name, in: inventory)
    }

    func hostName(ofFacts path: String) -> String {
        URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    }

    func guestDomain(on source: LoadedHost) async throws(CommandFailure) -> (GuestDomain?, CheckSubject.VMState) {
        if let domainXML {
            let text: String
            do {
                text = try TextFile.read(domainXML)
            } catch {
                throw CommandFailure(
                    "cannot read --domain-xml \(domainXML): \(error)", remedy: error.remedy,
                    exitCode: CommandFailure.usageOrConfiguration)
            }
            let domain: GuestDomain
            do {
                domain = try GuestDomain.parse(xml: text)
            } catch {
                throw CommandFailure("\(domainXML): \(error)", exitCode: CommandFailure.usageOrConfiguration)
            }
            guard domain.name == vm else {
                throw CommandFailure(
                    "\(domainXML) describes VM '\(domain.name)', not '\(vm)'",
                    exitCode: CommandFailure.usageOrConfiguration)
            }
            return (domain, .xmlGiven)
        }
        guard let connection = source.connection else {
            throw CommandFailure(
                "cannot look up VM \(vm): host \(source.name) has no libvirt connection",
                remedy: "give --domain-xml FILE, or a libvirt_uri for the host in the inventory",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        let found: (xml: String, active: Bool)?
        do {
            found = try await connection.domain(named: vm)
        } catch {
            throw CommandFailure(
                "cannot look up VM \(vm) on \(source.name): \(error)", exitCode: CommandFailure.unreachable)
        }
        guard let found else { return (nil, .notFound) }
        do {
            return (try GuestDomain.parse(xml: found.xml), found.active ? .running : .notRunning)
        } catch {
            throw CommandFailure("libvirt's XML of \(vm) cannot be read: \(error)")
        }
    }

    // MARK: Checking

    func check(
        domain: GuestDomain?, state: CheckSubject.VMState, source: LoadedHost, destination: LoadedHost,
        bandwidth: Double?, policy: CheckPolicy
    ) async -> CompatibilityReport {
        let cpu =
            state == .notRunning
            ? .notChecked("the VM is not running; libvirt compares the CPU of the running guest")
            : await compareCPU(domain: domain, destination: destination)
        let subject = CheckSubject(
            vmName: vm, vmState: state, domain: domain, sourceName: source.name, source: source.facts,
            destinationName: destination.name, destination: destination.facts, bandwidthMiBPerSecond: bandwidth,
            dirtyRateMiBPerSecond: dirtyRate, cpuComparison: cpu)
        return CompatibilityRules.evaluate(subject, policy: policy)
    }

    func compareCPU(domain: GuestDomain?, destination: LoadedHost) async -> CheckSubject.CPUComparison {
        await CPUComparison.compare(domain: domain, on: destination)
    }

    func rank(
        domain: GuestDomain?, state: CheckSubject.VMState, source: LoadedHost, inventory: HostInventoryConfig,
        loader: HostFactsLoader, policy: CheckPolicy, cordons: [HostCordon] = []
    ) async -> DestinationRanking {
        // Hosts are read and checked 16 at a time: their agents', daemons' and files' waits overlap.
        let candidates = await inventory.hosts.filter { $0.name != source.name }.concurrentMap(limit: 16) {
            host -> DestinationRanking.Candidate in
            if let cordon = cordons.first(where: { $0.host == host.name }) {
                return .init(
                    host: host.name, report: nil, packing: 0, unreachable: nil, cordoned: CordonText.reason(cordon))
            }
            do throws(CommandFailure) {
                let destination = try await loader.load(host)
                let report = await check(
                    domain: domain, state: state, source: source, destination: destination,
                    bandwidth: inventory.bandwidth(from: source.name, to: host.name), policy: policy)
                let packing =
                    domain.map { DestinationRanking.packing(of: $0, from: source.facts, on: destination.facts) } ?? 0
                return .init(host: host.name, report: report, packing: packing, unreachable: nil)
            } catch {
                return .init(host: host.name, report: nil, packing: 0, unreachable: error.message)
            }
        }
        return DestinationRanking(vm: vm, source: source.name, policy: policy.name, candidates: candidates)
    }

    func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}
