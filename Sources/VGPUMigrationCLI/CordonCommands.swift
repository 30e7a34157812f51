import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore

/// `vgpu-migrate cordon [HOST]`: marks a host as no destination, or lists the cordoned hosts.
struct CordonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cordon",
        abstract: "Mark a host as no destination (for maintenance) until 'uncordon'; with no host, list them.",
        discussion: """
            A cordon is kept in the history store, so every coordinator sharing it (PostgreSQL) sees it: \
            'migrate' refuses a cordoned destination (exit 2). Cordoning a host already cordoned keeps its \
            first cordon and says so. HOST must be in the inventory.
            """
    )

    @Argument(help: "The host (inventory name); none lists the cordoned hosts.") var host: String?
    @Option(name: .customLong("reason"), help: ArgumentHelp("Why, for the others to read.", valueName: "text"))
    var reason = "maintenance"
    @OptionGroup var inventoryFile: InventoryOption
    @OptionGroup var database: DatabaseOption
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func run() async throws {
        guard let host else {
            let cordons = try await listed(try await database.open(forReadingOnly: true))
            if json {
                print(try HistoryText.json(cordons))
            } else if cordons.isEmpty {
                print("No host is cordoned.")
            } else {
                for cordon in cordons { print(CordonText.line(cordon)) }
            }
            return
        }
        _ = try InventoryAccess.host(host, in: try inventoryFile.load())
        let store = try await database.open()
        let (cordon, created) = try await CordonText.cordon(host, reason: reason, in: store)
        if json {
            print(try HistoryText.json(cordon))
        } else if !created {
            print("\(host) was already cordoned: \(CordonText.line(cordon))")
        } else {
            print("cordoned \(host): no migration goes there until 'vgpu-migrate uncordon \(host)'")
        }
    }

    private func listed(_ store: any HistoryStore) async throws(CommandFailure) -> [HostCordon] {
        do {
            return try await store.cordons()
        } catch {
            throw CommandFailure("cannot read the cordons: \(error)")
        }
    }
}

/// `vgpu-migrate uncordon HOST`: the host takes migrations again.
struct UncordonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "uncordon",
        abstract: "Let a cordoned host take migrations again."
    )

    @Argument(help: "The host (inventory name).") var host: String
    @OptionGroup var database: DatabaseOption
    @Flag(name: .customLong("json"), help: "Print the lifted cordon as JSON (null when there was none).")
    var json = false

    func run() async throws {
        let store = try await database.open()
        let lifted: HostCordon?
        do {
            lifted = try await store.uncordon(host: host)
        } catch {
            throw CommandFailure("cannot uncordon \(host): \(error)")
        }
        if json {
            print(try lifted.map { try HistoryText.json($0) } ?? "null")
        } else if let lifted {
            print("uncordoned \(host) (\(CordonText.line(lifted)))")
        } else {
            print("\(host) was not cordoned")
        }
    }
}

/// Cordons as the commands print them.
enum CordonText {
    /// `gpu-07  cordoned 2026-12-06 17:02:11 by root@ops-1: driver update`
    static func line(_ cordon: HostCordon) -> String {
        "\(cordon.host)  cordoned \(HistoryText.time(cordon.since))" + (cordon.by.map { " by \($0)" } ?? "")
            + ": \(cordon.reason)"
    }

    /// `driver update, by root@ops-1, since 2026-12-06 17:02:11`: why a host is no destination.
    static func reason(_ cordon: HostCordon) -> String {
        cordon.reason + (cordon.by.map { ", by \($0)" } ?? "") + ", since \(HistoryText.time(cordon.since))"
    }

    /// Cordons `host` in `store` in the name of whoever runs the command; the cordon it
    /// already had comes back unchanged (`created` false).
    static func cordon(_ host: String, reason: String, in store: any HistoryStore, remedy: String? = nil)
        async throws(CommandFailure) -> (HostCordon, created: Bool)
    {
        let asked = HostCordon(host: host, reason: reason, since: Date(), by: operatorName())
        do {
            return try await store.cordon(asked)
        } catch {
            throw CommandFailure("cannot cordon \(host): \(error)", remedy: remedy)
        }
    }

    /// `user@machine` of whoever runs the command.
    static func operatorName() -> String {
        let account = getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) }
        let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? account ?? String(getuid())
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }
}

extension DatabaseOption {
    /// The cordoned hosts the history holds; none when there is no history yet. A history that
    /// cannot be read is said on standard error (with what the command does `otherwise`), and
    /// the command goes on without it.
    func cordons(otherwise: String) async -> [HostCordon] {
        guard let location = try? historyLocation(), location.mayExist else { return [] }
        do {
            return try await open(forReadingOnly: true).cordons()
        } catch {
            CommandRunner.writeStandardError("warning: cannot read the cordoned hosts (\(error)); \(otherwise)")
            return []
        }
    }
}
