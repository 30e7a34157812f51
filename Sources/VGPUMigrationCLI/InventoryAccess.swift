import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUPolicies

/// Reading the inventory file, with the errors every command gives.
enum InventoryAccess {
    /// The inventory file: `explicit` (--inventory), else the settings file's, else the default.
    static func path(_ explicit: String?) throws(CommandFailure) -> String {
        if let explicit { return explicit }
        return try CoordinatorSettings.current()?.inventory ?? HostInventoryFile.defaultPath
    }

    /// The inventory, or only the hosts `only` names (see `HostInventoryFile.parse(_:file:hosts:)`).
    static func load(path explicit: String?, only names: Set<String>? = nil) throws(CommandFailure)
        -> HostInventoryConfig
    {
        let path = try self.path(explicit)
        let text: String
        do {
            text = try TextFile.read(path)
        } catch {
            throw CommandFailure(
                "cannot read the inventory \(path): \(error)",
                remedy: error.remedy ?? "pass --inventory FILE, or --source-facts/--dest-facts snapshots",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            if let names { return try HostInventoryFile.parse(text, file: path, hosts: names) }
            return try HostInventoryFile.parse(text, file: path)
        } catch {
            throw CommandFailure(error.description, exitCode: CommandFailure.usageOrConfiguration)
        }
    }

    static func host(_ name: String, in inventory: HostInventoryConfig) throws(CommandFailure) -> InventoryHost {
        guard let host = inventory.host(named: name) else {
            let known = inventory.hosts.map(\.name).joined(separator: ", ")
            throw CommandFailure(
                "host '\(name)' is not in the inventory", remedy: "known hosts: \(known.isEmpty ? "none" : known)",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        return host
    }
}

/// `--inventory FILE`, for the commands that reach hosts.
struct InventoryOption: ParsableArguments {
    @Option(name: .customLong("inventory"), help: ArgumentHelp("Inventory file.", valueName: "file"))
    var path: String?

    func load(only names: Set<String>? = nil) throws(CommandFailure) -> HostInventoryConfig {
        try InventoryAccess.load(path: path, only: names)
    }

    /// A facts loader that takes the inventory's relative paths from the inventory's folder.
    func factsLoader(catalog: GPUBoardCatalog) throws(CommandFailure) -> HostFactsLoader {
        let file = URL(fileURLWithPath: try InventoryAccess.path(path))
        return HostFactsLoader(catalog: catalog, baseDirectory: file.deletingLastPathComponent())
    }
}
