import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUPolicies

/// `vgpu-migrate policy list|show|schedule`.
struct PolicyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "List, show and explain the migration policies in the policies directory.",
        subcommands: [PolicyListCommand.self, PolicyShowCommand.self, PolicyScheduleCommand.self]
    )
}

struct PolicyDirectoryOption: ParsableArguments {
    @Option(name: .customLong("policies"), help: ArgumentHelp("Directory of the policy files.", valueName: "dir"))
    var policies: String?

    func load(_ name: String) throws(CommandFailure) -> (MigrationPolicy, URL) {
        let directory = try PolicyDirectory.locate(explicit: policies)
        return (
            try PolicyDirectory.migrationPolicy(named: name, in: directory),
            directory.appendingPathComponent("\(name).yaml")
        )
    }

    func names() throws(CommandFailure) -> [String] {
        PolicyDirectory.policyNames(in: try PolicyDirectory.locate(explicit: policies))
    }
}

struct PolicyListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the policies.")
    @OptionGroup var directory: PolicyDirectoryOption
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func run() async throws {
        var rows = [["NAME", "SCHEDULE", "MAX DOWNTIME", "ON TIMEOUT", "DIRTY TRACKING MISSING"]]
        var objects: [[String: String]] = []
        for name in try directory.names() {
            let (policy, _) = try directory.load(name)
            rows.append([
                name + (name == MigrationPolicyFile.defaultName ? " (default)" : ""), policy.schedule.kind,
                "\(policy.checks.maxDowntimeMilliseconds) ms", policy.onTimeout.rawValue,
                policy.checks.missingDirtyTracking.rawValue,
            ])
            objects.append([
                "name": name, "schedule": policy.schedule.kind,
                "max_downtime_ms": String(policy.checks.maxDowntimeMilliseconds),
                "on_timeout": policy.onTimeout.rawValue,
            ])
        }
        if json {
            print(try HistoryText.json(objects))
        } else {
            print(InventoryReport.table(rows, rightAligned: [2], indent: ""), terminator: "")
        }
    }
}

struct PolicyShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a policy file.")
    @OptionGroup var directory: PolicyDirectoryOption
    @Argument(help: "Policy name.") var name: String

    func validate() throws {
        if !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("'\(name)' is not a policy name")
        }
    }

    func run() async throws {
        let (_, url) = try directory.load(name)
        print(try TextFile.readPolicyFile(url.path), terminator: "")
    }
}

struct PolicyScheduleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule", abstract: "Print the downtime steps a policy applies to a guest of a given size.")
    @OptionGroup var directory: PolicyDirectoryOption
    @Argument(help: "Policy name.") var name: String
    @Option(help: ArgumentHelp("Guest memory, e.g. 16GiB, 512MiB.", valueName: "size")) var memory: String
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func validate() throws {
        if !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            throw ValidationError("'\(name)' is not a policy name")
        }
        if Self.gibibytes(memory) == nil { throw ValidationError("--memory takes a size such as 16GiB or 512MiB") }
    }

    static func gibibytes(_ text: String) -> Double? {
        for (suffix, factor) in [("GiB", 1.0), ("G", 1.0), ("MiB", 1.0 / 1024), ("M", 1.0 / 1024), ("TiB", 1024.0)]
        where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast(suffix.count)), value > 0, value < 1_000_000 else { return nil }
            return value * factor
        }
        return nil
    }

    func run() async throws {
        let (policy, _) = try directory.load(name)
        let steps = policy.plannedSteps(memoryGiB: Self.gibibytes(memory)!)
        if json {
            print(try HistoryText.json(steps.map { ["when": $0.when, "downtime_ms": String($0.milliseconds)] }))
            return
        }
        print(
            "Policy \(name) (\(policy.schedule.kind)) for a guest of \(memory), cap \(policy.checks.maxDowntimeMilliseconds) ms:"
        )
        var rows = [["WHEN", "DOWNTIME LIMIT"]]
        for step in steps { rows.append([step.when, step.milliseconds == 0 ? "-" : "\(step.milliseconds) ms"]) }
        print(InventoryReport.table(rows, rightAligned: [1], indent: "  "), terminator: "")
        let timeout = policy.completionTimeoutSecondsPerGiB * max(1, Self.gibibytes(memory)!)
        print(
            "Completion timeout \(Int(timeout)) s, progress timeout \(Int(policy.progressTimeoutSeconds)) s, then \(policy.onTimeout.rawValue)."
        )
    }
}
