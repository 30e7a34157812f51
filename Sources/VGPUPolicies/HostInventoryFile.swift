import VGPUMigrationCore

/// One host of the inventory file and where its facts come from.
package struct InventoryHost: Sendable, Hashable {
    package var name: String
    /// libvirt URI of the host's daemon (`qemu+tcp://gpu-1/system`).
    package var libvirtURI: String?
    /// URL of the host's vgpu-agent.
    package var agentURL: String?
    /// Where the agent credentials are (a file holding the bearer token); never the secret itself.
    package var credentials: String?
    /// CA that signed the agent's certificate, and the client certificate and key for agents
    /// that require mutual TLS (PEM files).
    package var agentCA: String?
    package var agentClientCertificate: String?
    package var agentClientKey: String?
    /// sysfs root to read directly: only for the host the coordinator runs on, or a captured tree.
    package var sysfsRoot: String?
    /// A saved `inspect --json` snapshot to use as the host's facts.
    package var factsFile: String?
    /// Link bandwidth to other hosts by name, in MiB/s.
    package var bandwidthMiBPerSecond: [String: Double]
    /// Address the migration data stream goes to when this host is the destination
    /// (`migrate_uri` tcp://ADDRESS, QEMU listening there); nil lets libvirt choose.
    package var migrationAddress: String?
    /// The most migrations a drain runs out of / into this host at once (nil: the default).
    package var maxOutboundMigrations: Int?
    package var maxInboundMigrations: Int?

    package init(
        name: String, libvirtURI: String? = nil, agentURL: String? = nil, credentials: String? = nil,
        agentCA: String? = nil, agentClientCertificate: String? = nil, agentClientKey: String? = nil,
        sysfsRoot: String? = nil, factsFile: String? = nil, bandwidthMiBPerSecond: [String: Double] = [:],
        migrationAddress: String? = nil
    ) {
        self.migrationAddress = migrationAddress
        self.agentCA = agentCA
        self.agentClientCertificate = agentClientCertificate
        self.agentClientKey = agentClientKey
        self.name = name
        self.libvirtURI = libvirtURI
        self.agentURL = agentURL
        self.credentials = credentials
        self.sysfsRoot = sysfsRoot
        self.factsFile = factsFile
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
    }
}

/// The inventory: host name → how to reach it.
package struct HostInventoryConfig: Sendable, Hashable {
    package var hosts: [InventoryHost]
    /// Link bandwidth between any two hosts when a host does not name the pair, in MiB/s.
    package var defaultBandwidthMiBPerSecond: Double?
    /// Migrations a drain runs out of / into one host at once, for hosts that do not say.
    package var defaultMaxOutboundMigrations: Int?
    package var defaultMaxInboundMigrations: Int?

    /// A drain's limits: `parallel` in all, and per host as the inventory says, else KubeVirt's
    /// defaults.
    package func drainLimits(parallel: Int) -> DrainLimits {
        DrainLimits(
            parallel: parallel, defaultOutbound: defaultMaxOutboundMigrations ?? DrainLimits.defaultOutboundPerHost,
            defaultInbound: defaultMaxInboundMigrations ?? DrainLimits.defaultInboundPerHost,
            outboundPerHost: Dictionary(
                uniqueKeysWithValues: hosts.compactMap { host in
                    host.maxOutboundMigrations.map { (host.name, $0) }
                }),
            inboundPerHost: Dictionary(
                uniqueKeysWithValues: hosts.compactMap { host in
                    host.maxInboundMigrations.map { (host.name, $0) }
                }))
    }

    package func host(named name: String) -> InventoryHost? {
        hosts.first { $0.name == name }
    }

    /// Bandwidth from `source` to `destination`: either side's entry, else the default.
    package func bandwidth(from source: String, to destination: String) -> Double? {
        host(named: source)?.bandwidthMiBPerSecond[destination] ?? host(named: destination)?.bandwidthMiBPerSecond[
            source]
            ?? defaultBandwidthMiBPerSecond
    }
}

/// Reads the inventory file (default `/etc/vgpu-migrate/hosts.yaml`).
package enum HostInventoryFile {
    package static let defaultPath = "/etc/vgpu-migrate/hosts.yaml"

    /// Reads only the hosts named in `names` (and the defaults): a command that reaches one or
    /// two hosts then takes the same time whatever the size of the inventory. The other hosts'
    /// lines are blanked out before the YAML is read, so line numbers in errors stay the file's.
    /// An inventory not written as plain block YAML (anchors, flow-style `hosts`, a host named
    /// in quotes) is read whole.
    package static func parse(_ text: String, file: String, hosts names: Set<String>) throws(PolicyFileError)
        -> HostInventoryConfig
    {
        guard let reduced = reduced(text, keeping: names) else { return try parse(text, file: file) }
        // Bandwidth may name hosts that were left out.
        return try parse(reduced, file: file, peersListed: false)
    }

    /// `text` with the lines of every host not in `names` made empty; nil when the text is not
    /// plain enough to cut by lines, or a name is not found (the whole file then says why).
    static func reduced(_ text: String, keeping names: Set<String>) -> String? {
        // Bytes, not Characters: the scan costs a few milliseconds for ten thousand hosts.
        let bytes = Array(text.utf8)
        let space = UInt8(ascii: " ")
        // Anchors and aliases could tie one host's lines to another's.
        if bytes.contains(where: { $0 == UInt8(ascii: "&") || $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "\t") }) {
            return nil
        }
        var lines: [Range<Int>] = []
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == UInt8(ascii: "\n") {
            lines.append(start..<index)
            start = index + 1
        }
        lines.append(start..<bytes.count)
        func indentation(_ line: Range<Int>) -> Int { bytes[line].prefix { $0 == space }.count }
        func isContent(_ line: Range<Int>) -> Bool {
            guard let first = bytes[line].first(where: { $0 != space }) else { return false }
            return first != UInt8(ascii: "#")
        }
        let hostsKey = Array("hosts:".utf8)
        guard
            let hostsLine = lines.firstIndex(where: { bytes[$0].starts(with: hostsKey) }),
            bytes[lines[hostsLine]].dropFirst(hostsKey.count).allSatisfy({ $0 == space })
        else { return nil }
        // The hosts block: from the line after `hosts:` to the next line at column 0.
        let end = lines[(hostsLine + 1)...].firstIndex { isContent($0) && indentation($0) == 0 } ?? lines.count
        guard let first = lines[(hostsLine + 1)..<end].firstIndex(where: isContent) else { return nil }
        let hostIndent = indentation(lines[first])
        guard hostIndent > 0 else { return nil }
        var found: Set<String> = []
        var keep = false
        var blanked = Array(repeating: false, count: lines.count)
        for index in (hostsLine + 1)..<end {
            let line = lines[index]
            if isContent(line) && indentation(line) <= hostIndent {
                let key = bytes[(line.lowerBound + hostIndent)..<line.upperBound]
                guard indentation(line) == hostIndent, let colon = key.firstIndex(of: UInt8(ascii: ":")) else {
                    return nil
                }
                let name = key[key.startIndex..<colon]
                let after = colon + 1 < line.upperBound ? bytes[colon + 1] : space
                guard
                    !name.isEmpty, after == space,
                    name.allSatisfy({ byte in
                        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20)
                            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
                            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".")
                    })
                else { return nil }
                let text = String(decoding: name, as: UTF8.self)
                keep = names.contains(text)
                if keep { found.insert(text) }
            }
            blanked[index] = !keep
        }
        guard found == names else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for (index, line) in lines.enumerated() {
            if index > 0 { out.append(UInt8(ascii: "\n")) }
            if !blanked[index] { out.append(contentsOf: bytes[line]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    package static func parse(_ text: String, file: String) throws(PolicyFileError) -> HostInventoryConfig {
        try parse(text, file: file, peersListed: true)
    }

    /// `peersListed`: every host a bandwidth entry names must be in the text.
    static func parse(_ text: String, file: String, peersListed: Bool) throws(PolicyFileError) -> HostInventoryConfig {
        let document = try PolicyYAML.parse(text, file: file)
        _ = try document.mapping(allowedKeys: ["hosts", "defaults"], what: "the inventory")
        var defaultBandwidth: Double?
        var defaultOutbound: Int?
        var defaultInbound: Int?
        if let defaults = document.optional("defaults") {
            _ = try defaults.mapping(
                allowedKeys: ["bandwidth_mib_per_s", "max_outbound_migrations", "max_inbound_migrations"],
                what: "'defaults'")
            if let node = defaults.optional("bandwidth_mib_per_s") {
                defaultBandwidth = Double(try node.int(what: "bandwidth_mib_per_s", range: 1...1_000_000))
            }
            defaultOutbound = try defaults.optional("max_outbound_migrations")?.int(
                what: "max_outbound_migrations", range: 1...64)
            defaultInbound = try defaults.optional("max_inbound_migrations")?.int(
                what: "max_inbound_migrations", range: 1...64)
        }
        var hosts: [InventoryHost] = []
        let keys: Set<String> = [
            "libvirt_uri", "agent_url", "credentials", "agent_ca", "agent_client_cert", "agent_client_key",
            "sysfs_root",
            "facts_file", "bandwidth_mib_per_s", "migration_address", "max_outbound_migrations",
            "max_inbound_migrations",
        ]
        for (key, value) in try document.required("hosts", in: "the inventory").mapping(what: "'hosts'") {
            let name = try key.string(what: "a host name")
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw key.error("host name '\(name)' may only hold letters, digits, '-', '_' and '.'")
            }
            if hosts.contains(where: { $0.name == name }) { throw key.error("host '\(name)' is listed twice") }
            _ = try value.mapping(allowedKeys: keys, what: "host '\(name)'")
            func text(_ key: String) throws(PolicyFileError) -> String? {
                try value.optional(key)?.string(what: key)
            }
            var bandwidth: [String: Double] = [:]
            if let links = value.optional("bandwidth_mib_per_s") {
                for (peer, speed) in try links.mapping(what: "bandwidth_mib_per_s of '\(name)'") {
                    bandwidth[try peer.string(what: "a host name")] = Double(
                        try speed.int(what: "bandwidth_mib_per_s", range: 1...1_000_000))
                }
            }
            var host = InventoryHost(
                name: name, libvirtURI: try text("libvirt_uri"), agentURL: try text("agent_url"),
                credentials: try text("credentials"), agentCA: try text("agent_ca"),
                agentClientCertificate: try text("agent_client_cert"), agentClientKey: try text("agent_client_key"),
                sysfsRoot: try text("sysfs_root"), factsFile: try text("facts_file"), bandwidthMiBPerSecond: bandwidth,
                migrationAddress: try text("migration_address"))
            host.maxOutboundMigrations = try value.optional("max_outbound_migrations")?.int(
                what: "max_outbound_migrations", range: 1...64)
            host.maxInboundMigrations = try value.optional("max_inbound_migrations")?.int(
                what: "max_inbound_migrations", range: 1...64)
            if (host.agentClientCertificate == nil) != (host.agentClientKey == nil) {
                throw value.error("host '\(name)': agent_client_cert and agent_client_key go together")
            }
            if host.libvirtURI == nil && host.agentURL == nil && host.sysfsRoot == nil && host.factsFile == nil {
                throw value.error(
                    "host '\(name)' has no libvirt_uri, agent_url, sysfs_root or facts_file: nothing to read it from")
            }
            hosts.append(host)
        }
        let inventory = HostInventoryConfig(
            hosts: hosts, defaultBandwidthMiBPerSecond: defaultBandwidth, defaultMaxOutboundMigrations: defaultOutbound,
            defaultMaxInboundMigrations: defaultInbound)
        for host in hosts where peersListed {
            for peer in host.bandwidthMiBPerSecond.keys where inventory.host(named: peer) == nil {
                throw document.error(
                    "host '\(host.name)' names bandwidth to '\(peer)', which the inventory does not list")
            }
        }
        return inventory
    }
}
