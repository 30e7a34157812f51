import Foundation
import VGPUAgentClient
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
        let text: String
        do {
            text = try TextFile.read(url.path)
        } catch {
            throw CommandFailure(
                "cannot read host facts \(url.path): \(error)", remedy: error.remedy,
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            return LoadedHost(name: name, facts: try JSONDecoder().decode(HostInventory.self, from: Data(text.utf8)))
        } catch {
            throw CommandFailure(
                "\(url.path) is not a host snapshot: \(describeDecodingFailure(error))",
                remedy: "write one with 'vgpu-migrate inspect --json > FILE'",
                exitCode: CommandFailure.usageOrConfiguration)
        }
    }

    /// Reads an inventory host. GPUs come from a facts file, else the sysfs root, else the agent,
    /// else libvirt node devices; a libvirt URI always adds libvirt's host facts.
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
            facts = try sysfsFacts(root: root, label: label)
        } else if host.agentURL != nil {
            facts = try await agentFacts(host, label: label)
        } else if let connection {
            do {
                return LoadedHost(
                    name: host.name,
                    facts: try await LibvirtHostInventory.read(connection: connection, catalog: catalog),
                    connection: connection)
            } catch {
                throw CommandFailure(
                    "cannot read \(label) through libvirt: \(error)", exitCode: CommandFailure.unreachable)
            }
        } else {
            throw CommandFailure(
                "\(label) has nothing to read its facts from", exitCode: CommandFailure.usageOrConfiguration)
        }
        if let connection {
            do {
                try await LibvirtHostInventory.addHostFacts(from: connection, to: &facts)
            } catch {
                throw CommandFailure(
                    "cannot read \(label) through libvirt: \(error)", exitCode: CommandFailure.unreachable)
            }
        }
        return LoadedHost(name: host.name, facts: facts, connection: connection)
    }

    private func sysfsFacts(root: String, label: String) throws(CommandFailure) -> HostInventory {
        let path = URL(fileURLWithPath: root, relativeTo: baseDirectory).path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CommandFailure(
                "the sysfs root \(path) of \(label) is not a directory", exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            return try SysfsHostProbe(sysfs: DirectorySysfs(root: path), catalog: catalog).inventory()
        } catch {
            throw CommandFailure(
                "cannot read \(label): \(error)",
                remedy: "the file holds something the kernel never writes; check the tree or the driver")
        }
    }
}

extension HostFactsLoader {
    /// The agent client for an inventory host, with its token read from the credentials file.
    func agentClient(_ host: InventoryHost, label: String) throws(CommandFailure) -> AgentClient {
        guard let url = host.agentURL else {
            throw CommandFailure("\(label) has no agent_url", exitCode: CommandFailure.usageOrConfiguration)
        }
        var token: String?
        if let credentials = host.credentials {
            let path = URL(fileURLWithPath: credentials, relativeTo: baseDirectory).path
            do {
                token = try TextFile.read(path).trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                throw CommandFailure(
                    "cannot read the agent credentials of \(label) (\(path)): \(error)",
                    exitCode: CommandFailure.usageOrConfiguration)
            }
        }
        let resolve = { (path: String?) in path.map { URL(fileURLWithPath: $0, relativeTo: baseDirectory).path } }
        return AgentClient(
            endpoint: AgentEndpoint(
                baseURL: url, token: token, caFile: resolve(host.agentCA),
                clientCertificate: resolve(host.agentClientCertificate), clientKey: resolve(host.agentClientKey)))
    }

    func agentFacts(_ host: InventoryHost, label: String) async throws(CommandFailure) -> HostInventory {
        let client = try agentClient(host, label: label)
        do {
            return try await client.facts()
        } catch {
            switch error {
            case .unreachable, .refused, .timeout, .tls, .server:
                throw CommandFailure(
                    "cannot reach \(label)'s agent at \(client.endpoint.baseURL): \(error)",
                    remedy:
                        "check that vgpu-agent runs there, and the inventory's agent_url, agent_ca and certificates",
                    exitCode: CommandFailure.unreachable)
            case .clientUnavailable:
                throw CommandFailure("cannot call \(label)'s agent: \(error)", exitCode: CommandFailure.failed)
            default:
                throw CommandFailure(
                    "\(label)'s agent at \(client.endpoint.baseURL) refused: \(error)",
                    remedy: "check the token in the credentials file", exitCode: CommandFailure.usageOrConfiguration)
            }
        }
    }
}

extension Collection where Element: Sendable {
    /// `transform` of every element, at most `limit` at a time, in the elements' order: reading
    /// many hosts (their agents, libvirt daemons, snapshots) overlaps their waits.
    func concurrentMap<T: Sendable>(limit: Int, _ transform: @escaping @Sendable (Element) async -> T) async -> [T] {
        let elements = Array(self)
        return await withTaskGroup(of: (Int, T).self, returning: [T].self) { group in
            var next = 0
            while next < Swift.min(limit, elements.count) {
                let index = next
                group.addTask { (index, await transform(elements[index])) }
                next += 1
            }
            var results: [T?] = Array(repeating: nil, count: elements.count)
            while let (index, result) = await group.next() {
                results[index] = result
                if next < elements.count {
                    let index = next
                    group.addTask { (index, await transform(elements[index])) }
                    next += 1
                }
            }
            return results.map { $0! }
        }
    }
}
