import Foundation
import VGPUCommandSupport
import VGPUHost
import VGPUMigrationCore
import VGPUMigrationLibvirt
import VGPUPolicies

/// A host's facts and, when it was reached through libvirt, the open connection.
struct LoadedHost: Sendable {
    var name: String
    var facts: HostInventory
    var connection: LibvirtConnection?
}

/// Gets host facts from where the inventory says, with the same meaning whatever the source:
/// a saved `inspect --json` snapshot, a sysfs tree and/or a libvirt URI.
struct HostFactsLoader {
    var catalog: GPUBoardCatalog
    /// The inventory file's directory: relative paths in the inventory are read from there.
    var baseDirectory: URL

    /// Reads a snapshot written by `vgpu-migrate inspect --json`.
    func snapshot(_ path: String, name: String) throws(CommandFailure) -> LoadedHost {
        let url = URL(fileURLWithPath: path, relativeTo: baseDirectory)
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw CommandFailure(
                "cannot read host facts \(url.path): \(error.localizedDescription)",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            return LoadedHost(name: name, facts: try JSONDecoder().decode(HostInventory.self, from: data))
        } catch {
            throw CommandFailure(
                "\(url.path) is not a host snapshot: \(describe(error))",
                remedy: "write one with 'vgpu-migrate inspect --json > FILE'",
                exitCode: CommandFailure.usageOrConfiguration)
        }
    }

    func load(_ host: InventoryHost) async throws(CommandFailure) -> LoadedHost {
        if let factsFile = host.factsFile { return try snapshot(factsFile, name: host.name) }
        // Inventory hosts are named in messages; the host `inspect` reads has no name.
        let label = host.name.isEmpty ? "the host" : "host \(host.name)"
        var connection: LibvirtConnection?
        if let uri = host.libvirtURI {
            do {
                connection = try await LibvirtConnection.open(uri: uri)
            } catch {
                throw CommandFailure(
                    "cannot reach \(label) through libvirt at \(uri): \(error)",
                    remedy: "check that libvirtd runs there and the inventory's libvirt_uri",
                    exitCode: CommandFailure.unreachable)
            }
        }
        var facts: HostInventory
        if let root = host.sysfsRoot {
            let path = URL(fileURLWithPath: root, relativeTo: baseDirectory).path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw CommandFailure(
                    "the sysfs root \(path) of \(label) is not a directory",
                    exitCode: CommandFailure.usageOrConfiguration)
            }
            do {
                facts = try SysfsHostProbe(sysfs: DirectorySysfs(root: path), catalog: catalog).inventory()
            } catch {
                throw CommandFailure(
                    "cannot read \(label): \(error)",
                    remedy: "the file holds something the kernel never writes; check the tree or the driver")
            }
            if let connection {
                do {
                    try await LibvirtHostInventory.addHostFacts(from: connection, to: &facts)
                } catch {
                    throw CommandFailure(
                        "cannot read \(label) through libvirt: \(error)", exitCode: CommandFailure.unreachable)
                }
            }
        } else if let connection {
            do {
                facts = try await LibvirtHostInventory.read(connection: connection, catalog: catalog)
            } catch {
                throw CommandFailure(
                    "cannot read \(label) through libvirt: \(error)", exitCode: CommandFailure.unreachable)
            }
        } else {
            throw CommandFailure(
                "host \(host.name) is only reachable through its agent (\(host.agentURL ?? "")), which this version cannot talk to yet",
                remedy: "give the host a facts_file (inspect --json on the host), or sysfs_root and libvirt_uri",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        return LoadedHost(name: host.name, facts: facts, connection: connection)
    }
}

/// A decoding error in a line an operator can act on.
func describe(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    switch error {
    case .keyNotFound(let key, let context):
        return "missing '\(key.stringValue)' at \(path(context))"
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        return "\(context.debugDescription) at \(path(context))"
    @unknown default:
        return "\(error)"
    }
}

private func path(_ context: DecodingError.Context) -> String {
    let text = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    return text.isEmpty ? "the top level" : text
}
