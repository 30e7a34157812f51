import VGPUMigrationCore

/// Reads a migration policy `policies/NAME.yaml` (see `policies/adaptive.yaml` for the keys).
package enum MigrationPolicyFile {
    /// The policy used when none is named.
    package static let defaultName = "adaptive"

    package static func parse(_ text: String, name: String, file: String) throws(PolicyFileError) -> CheckPolicy {
        let document = try PolicyYAML.parse(text, file: file)
        _ = try document.mapping(allowedKeys: ["checks", "migration", "downtime"], what: "a policy")
        var policy = CheckPolicy.defaults
        policy.name = name
        if let checks = document.optional("checks") {
            let keys: Set<String> = [
                "minimum_libvirt", "minimum_qemu", "minimum_kernel", "driver_match", "missing_dirty_tracking",
                "assumed_dirty_rate_mib_per_s", "default_bandwidth_mib_per_s",
            ]
            _ = try checks.mapping(allowedKeys: keys, what: "'checks'")
            func version(_ key: String) throws(PolicyFileError) -> VersionNumber? {
                guard let node = checks.optional(key) else { return nil }
                let text = try node.string(what: key)
                guard let version = VersionNumber(text), version.description == text else {
                    throw node.error("\(key) must be a version such as 8.6.0, found '\(text)'")
                }
                return version
            }
            policy.minimumLibvirt = try version("minimum_libvirt") ?? policy.minimumLibvirt
            policy.minimumQEMU = try version("minimum_qemu") ?? policy.minimumQEMU
            policy.minimumKernel = try version("minimum_kernel") ?? policy.minimumKernel
            if let node = checks.optional("driver_match") {
                let text = try node.string(what: "driver_match")
                guard let value = CheckPolicy.DriverMatch(rawValue: text) else {
                    throw node.error("driver_match must be exact or branch, found '\(text)'")
                }
                policy.driverMatch = value
            }
            if let node = checks.optional("missing_dirty_tracking") {
                let text = try node.string(what: "missing_dirty_tracking")
                guard let value = CheckPolicy.MissingDirtyTracking(rawValue: text) else {
                    throw node.error("missing_dirty_tracking must be warn or fail, found '\(text)'")
                }
                policy.missingDirtyTracking = value
            }
            if let node = checks.optional("assumed_dirty_rate_mib_per_s") {
                policy.assumedDirtyRateMiBPerSecond = Double(
                    try node.int(what: "assumed_dirty_rate_mib_per_s", range: 0...1_000_000))
            }
            if let node = checks.optional("default_bandwidth_mib_per_s") {
                policy.defaultBandwidthMiBPerSecond = Double(
                    try node.int(what: "default_bandwidth_mib_per_s", range: 1...1_000_000))
            }
        }
        if let migration = document.optional("migration") {
            _ = try migration.mapping(allowedKeys: ["post_copy"], what: "'migration'")
            if let node = migration.optional("post_copy") { policy.postCopy = try node.bool(what: "post_copy") }
        }
        if let downtime = document.optional("downtime") {
            _ = try downtime.mapping(allowedKeys: ["max_ms"], what: "'downtime'")
            if let node = downtime.optional("max_ms") {
                // QEMU caps the downtime limit at 2,000,000 ms.
                policy.maxDowntimeMilliseconds = try node.int(what: "max_ms", range: 1...2_000_000)
            }
        }
        return policy
    }
}
