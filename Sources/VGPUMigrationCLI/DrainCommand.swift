import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationLibvirt
import VGPUPolicies

/// `vgpu-migrate drain HOST`: plans where every running VM of a host goes, all together.
struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain",
        abstract:
            "Empty a host: plan a destination for every running VM at once, with capacity booked across the plan.",
        discussion: """
            Every running VM of HOST (listed through its libvirt) gets a destination, decided for all of them \
            together: each move passes every rule of 'check' against the destination as the moves planned \
            before it leave it, so two VMs never aim at one free vGPU slot and a VM never takes an empty GPU \
            that another vGPU size needed. VMs that cannot be placed are listed with the reasons before \
            anything moves. Destinations are --to's hosts, or every other inventory host (--to auto), without \
            the cordoned ones.

            --dry-run prints the plan (each VM's destination and GPU, the estimated downtime and time, and \
            the expected drain time under --parallel and the per-host limits) and changes nothing. \
            Per-host limits come from the inventory (max_outbound_migrations, max_inbound_migrations; \
            default 2 each, as KubeVirt's). Exit codes: 0 every VM has a destination, 1 some cannot be moved \
            (named), 2 usage or configuration error, 3 the host could not be reached.
            """
    )

    @Argument(help: "The host to empty (inventory name).") var host: String
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
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func validate() throws {
        if !(1...64).contains(parallel) { throw ValidationError("--parallel must be between 1 and 64") }
        if !policyName.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("--policy takes a policy name such as adaptive")
        }
        if destinationNames?.contains(host) == true { throw ValidationError("--to names \(host), the host to empty") }
        if destinationNames?.isEmpty == true { throw ValidationError("--to takes host names or 'auto'") }
    }

    /// `--to`'s hosts; nil for `auto`.
    var destinationNames: [String]? {
        guard destinations != "auto" else { return nil }
        return destinations.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func run() async throws {
        LibvirtConnection.loadLibraryInBackground()
        guard dryRun else {
            throw CommandFailure(
                "drain runs only with --dry-run for now: it plans and prints, and moves nothing",
                remedy: "run the plan's moves with 'vgpu-migrate migrate VM --from \(host) --to DESTINATION'",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        let (policy, file) = try policies.load(policyName)
        let catalog = try PolicyDirectory.boardCatalog(in: file.deletingLastPathComponent())
        let inventory = try inventoryFile.load()
        let loader = try inventoryFile.factsLoader(catalog: catalog)
        let facts = try await DrainFacts.gather(
            host: host, destinations: destinationNames, inventory: inventory, loader: loader,
            cordons: await database.cordons(otherwise: "planning onto every host asked for"))
        let limits = inventory.drainLimits(parallel: parallel)
        var plan = DrainPlanner.plan(facts.problem(policy: policy.checks, inventory: inventory))
        plan.unplaced = (plan.unplaced + facts.unreadable).sorted { $0.vm < $1.vm }
        let report = DrainPlanReport(
            host: host, parallel: parallel, outboundLimit: limits.outbound(host),
            expectedSeconds: DrainSchedule.expectedSeconds(plan, limits: limits), plan: plan)
        if json {
            print(try HistoryText.json(report))
        } else {
            print(DrainPlanText.plan(report, limits: limits), terminator: "")
        }
        if !plan.unplaced.isEmpty { throw ExitCode(CommandFailure.failed) }
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
        var loaded: [String: Result<LoadedHost, CommandFailure>] = [:]
        await withTaskGroup(of: (String, Result<LoadedHost, CommandFailure>).self) { group in
            var pending = wanted.filter { cordoned[$0.name] == nil }[...]
            func startNext() {
                guard let entry = pending.popFirst() else { return }
                group.addTask {
                    do throws(CommandFailure) {
                        return (entry.name, .success(try await loader.load(entry)))
                    } catch {
                        return (entry.name, .failure(error))
                    }
                }
            }
            for _ in 0..<concurrentReads { startNext() }
            for await (name, result) in group {
                loaded[name] = result
                startNext()
            }
        }
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
        out += "Dry run: nothing was cordoned or moved.\n"
        return out
    }
}
