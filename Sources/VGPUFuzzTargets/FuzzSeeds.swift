import Foundation
import VGPUMigrationCore

/// Where a target's first inputs come from: the project's fixtures, the shared real-world data
/// and the policies, so the fuzzer starts from what the readers meet in the field.
package struct FuzzSeeds {
    package var fixtures: URL
    package var realData: URL?
    package var policies: URL

    package init(fixtures: URL, realData: URL?, policies: URL) {
        self.fixtures = fixtures
        self.realData = realData
        self.policies = policies
    }

    /// Named inputs for `target`.
    package func inputs(for target: FuzzTarget) throws -> [(name: String, bytes: [UInt8])] {
        let roots = [fixtures] + (realData.map { [$0] } ?? [])
        switch target {
        case .xml, .domain, .nodeDevices:
            return try roots.flatMap { try files(under: $0, suffixes: [".xml"]) }
        case .policyYAML:
            return try ([policies] + roots).flatMap { try files(under: $0, suffixes: [".yaml", ".yml"]) }
        case .sysfs:
            var trees: [URL] = try FileManager.default.contentsOfDirectory(
                at: fixtures.appendingPathComponent("hosts"), includingPropertiesForKeys: nil
            )
            .filter { $0.hasDirectoryPath }
            if let realData { trees.append(realData.appendingPathComponent("kernel/mtty-sysfs-6.12")) }
            return try trees.sorted { $0.path < $1.path }.map { ($0.lastPathComponent, try Self.archive(of: $0)) }
        case .agentRequest:
            return [
                (
                    "request.json",
                    #"{"type_id":"nvidia-232","count":1,"owner":"m-1","lease_seconds":600,"idempotency_key":"k-1"}"#
                ),
                ("vendor.json", #"{"type_id":"1152","count":2,"owner":"a","lease_seconds":1,"idempotency_key":"b"}"#),
                (
                    "prefer.json",
                    #"{"type_id":"mtty-2","count":1,"owner":"m","lease_seconds":60,"idempotency_key":"p","prefer":["0000:3b:00.0","mtty"]}"#
                ),
                ("id.txt", "3f2a7d5e-1c4b-4e8a-9d6f-0a1b2c3d4e5f"),
                ("escaped.json", #"{"type_id":"..\/..","count":64,"owner":"\u00e9","lease_seconds":86400}"#),
            ].map { ($0.0, Array($0.1.utf8)) }
        }
    }

    /// Files under `root` whose names end with one of `suffixes`, by path.
    private func files(under root: URL, suffixes: [String]) throws -> [(name: String, bytes: [UInt8])] {
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
            return []
        }
        var found: [(String, [UInt8])] = []
        for case let url as URL in enumerator where suffixes.contains(where: url.lastPathComponent.hasSuffix) {
            let relative = url.path.dropFirst(root.path.count).replacingOccurrences(of: "/", with: "_")
            found.append((root.lastPathComponent + relative, Array(try Data(contentsOf: url))))
        }
        return found.sorted { $0.0 < $1.0 }
    }

    /// A directory tree in ``MemorySysfs``'s archive form (links kept as links, not followed).
    package static func archive(of root: URL) throws -> [UInt8] {
        var tree = MemorySysfs()
        let base = root.resolvingSymlinksInPath().path
        guard let enumerator = FileManager.default.enumerator(atPath: base) else { return [] }
        for case let relative as String in enumerator {
            let path = "\(base)/\(relative)"
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            switch attributes[.type] as? FileAttributeType {
            case .typeSymbolicLink?:
                tree.add(relative, .link(try FileManager.default.destinationOfSymbolicLink(atPath: path)))
            case .typeDirectory?:
                tree.add(relative, .directory)
            default:
                tree.add(
                    relative, .file(String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)))
            }
        }
        return tree.archive
    }
}
