import VGPUMigrationCore

/// A sysfs tree held in memory, read as ``SysfsIO``: what the probe fuzz target reads.
///
/// Its archive form (what the fuzzer mutates) is a list of records separated by NUL bytes:
/// a kind (`d` directory, `f` file, `l` symbolic link), the path relative to the root, a
/// newline, then the file's content or the link's target. Parent directories are implied;
/// records that make no sense are skipped, as a tree has no wrong shape, only odd ones.
package struct MemorySysfs: SysfsIO {
    /// What a path holds.
    package enum Node: Hashable, Sendable {
        case directory
        case file(String)
        case link(String)
    }

    /// Links followed in one lookup before giving up, as the kernel's ELOOP does.
    static let maximumLinkHops = 40

    private(set) var nodes: [String: Node] = ["": .directory]
    private var children: [String: Set<String>] = [:]

    package init() {}

    /// Reads the archive form; bytes that are not UTF-8 are replaced, as they could be on disk.
    package init(archive: some Collection<UInt8>) {
        for record in archive.split(separator: 0, omittingEmptySubsequences: true) {
            let text = String(decoding: record, as: UTF8.self)
            guard let kind = text.first else { continue }
            let rest = text.dropFirst()
            let path = String(rest.prefix { $0 != "\n" })
            let payload = String(rest.dropFirst(path.count + 1))
            switch kind {
            case "d": add(path, .directory)
            case "f": add(path, .file(payload))
            case "l": add(path, .link(payload))
            default: continue
            }
        }
    }

    /// The archive form of this tree, entries sorted by path.
    package var archive: [UInt8] {
        var bytes: [UInt8] = []
        for (path, node) in nodes.sorted(by: { $0.key < $1.key }) where !path.isEmpty {
            switch node {
            case .directory: bytes += Array("d\(path)\n".utf8)
            case .file(let content): bytes += Array("f\(path)\n\(content)".utf8)
            case .link(let target): bytes += Array("l\(path)\n\(target)".utf8)
            }
            bytes.append(0)
        }
        return bytes
    }

    /// Adds `node` at `path` with its parent directories; a path taken by something else
    /// stays as it is.
    package mutating func add(_ path: String, _ node: Node) {
        let parts = Self.components(path)
        guard !parts.isEmpty, !parts.contains(".."), !parts.contains(".") else { return }
        var current = ""
        for (index, part) in parts.enumerated() {
            let next = current.isEmpty ? part : "\(current)/\(part)"
            let last = index == parts.count - 1
            if let existing = nodes[next] {
                guard !last, existing == .directory else { return }
            } else {
                nodes[next] = last ? node : .directory
                children[current, default: []].insert(part)
            }
            current = next
        }
    }

    static func components(_ path: String) -> [String] {
        path.split(separator: "/" as Character).map(String.init)
    }

    /// The canonical path `path` names, links followed (the last one too when `followLast`);
    /// nil when some part does not exist.
    private func resolve(_ path: String, followLast: Bool) throws(SysfsError) -> String? {
        var pending = Array(Self.components(path).reversed())
        var resolved = ""
        var hops = 0
        while let part = pending.popLast() {
            if part == "." { continue }
            if part == ".." {
                resolved = resolved.lastIndex(of: "/").map { String(resolved[..<$0]) } ?? ""
                continue
            }
            let candidate = resolved.isEmpty ? part : "\(resolved)/\(part)"
            guard let node = nodes[candidate] else { return nil }
            if case .link(let target) = node, followLast || !pending.isEmpty {
                hops += 1
                guard hops <= Self.maximumLinkHops else {
                    throw SysfsError(path: "/\(path)", message: "too many levels of symbolic links")
                }
                if target.hasPrefix("/") { resolved = "" }
                pending += Self.components(target).reversed()
                continue
            }
            resolved = candidate
        }
        return resolved
    }

    package var rootDescription: String { "a tree in memory" }

    package func readFile(_ path: String) throws(SysfsError) -> String? {
        guard let resolved = try resolve(path, followLast: true) else { return nil }
        switch nodes[resolved] {
        case .file(let content): return content
        case .directory: throw SysfsError(path: "/\(path)", message: "is a directory, expected a file")
        case .link, nil: return nil
        }
    }

    package func listDirectory(_ path: String) throws(SysfsError) -> [String]? {
        guard let resolved = try resolve(path, followLast: true) else { return nil }
        switch nodes[resolved] {
        case .directory: return (children[resolved] ?? []).sorted()
        case .file: throw SysfsError(path: "/\(path)", message: "is a file, expected a directory")
        case .link, nil: return nil
        }
    }

    package func readLink(_ path: String) throws(SysfsError) -> String? {
        let parts = Self.components(path)
        guard let last = parts.last else { return nil }
        guard let parent = try resolve(parts.dropLast().joined(separator: "/"), followLast: true) else { return nil }
        guard case .link(let target) = nodes[parent.isEmpty ? last : "\(parent)/\(last)"] else { return nil }
        return target
    }

    package func writeFile(_ path: String, _ value: String) throws(SysfsError) {
        throw SysfsError(path: "/\(path)", message: "write refused: the tree in memory is read-only")
    }
}
