import VGPUMigrationCore

/// Reads a migration policy `policies/NAME.yaml` (see `policies/adaptive.yaml` for the keys).
package enum MigrationPolicyFile {
    /// The policy used when none is named.
    package static let defaultName = "adaptive"

    /// The checks of a policy (what `check` needs).
    package static func parse(_ text: String, name: String, file: String) throws(PolicyFileError) -> CheckPolicy {
        try parseMigrationPolicy(text, name: name, file: file).checks
    }

    /// The whole policy: checks, downtime schedule, monitoring and timeouts.
    package static func parseMigrationPolicy(_ text: String, name: String, file: String) throws(PolicyFileError)
        -> MigrationPolicy
    {
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
        var monitorInterval = 1000
        var completionTimeout = 800.0
        var progressTimeout = 150.0
        var onTimeout = TimeoutAction.abort
        var bandwidth: Int?
        if let migration = document.optional("migration") {
            _ = try migration.mapping(
                allowedKeys: [
                    "post_copy", "monitor_interval_ms", "completion_timeout_s_per_gib", "progress_timeout_s",
                    "on_timeout",
                    "bandwidth_mib_per_s",
                ], what: "'migration'")
            if let node = migration.optional("post_copy") { policy.postCopy = try node.bool(what: "post_copy") }
            if let node = migration.optional("monitor_interval_ms") {
                monitorInterval = try node.int(what: "monitor_interval_ms", range: 50...60_000)
            }
            if let node = migration.optional("completion_timeout_s_per_gib") {
                completionTimeout = Double(try node.int(what: "completion_timeout_s_per_gib", range: 1...100_000))
            }
            if let node = migration.optional("progress_timeout_s") {
                progressTimeout = Double(try node.int(what: "progress_timeout_s", range: 1...100_000))
            }
            if let node = migration.optional("on_timeout") {
                let text = try node.string(what: "on_timeout")
                guard let action = TimeoutAction(rawValue: text) else {
                    throw node.error("on_timeout must be abort or force-switchover, found '\(text)'")
                }
                onTimeout = action
            }
            if let node = migration.optional("bandwidth_mib_per_s") {
                bandwidth = try node.int(what: "bandwidth_mib_per_s", range: 1...1_000_000)
            }
        }
        var schedule = DowntimeSchedule.adaptive(initialMilliseconds: 300, margin: 1.25)
        if let downtime = document.optional("downtime") {
            _ = try downtime.mapping(
                allowedKeys: ["max_ms", "schedule", "fixed_ms", "nova", "stalled_iterations", "doubling", "adaptive"],
                what: "'downtime'")
            if let node = downtime.optional("max_ms") {
                // QEMU caps the downtime limit at 2,000,000 ms.
                policy.maxDowntimeMilliseconds = try node.int(what: "max_ms", range: 1...2_000_000)
            }
            schedule = try Self.schedule(downtime)
        }
        return MigrationPolicy(
            name: name, checks: policy, schedule: schedule, monitorIntervalMilliseconds: monitorInterval,
            completionTimeoutSecondsPerGiB: completionTimeout, progressTimeoutSeconds: progressTimeout,
            onTimeout: onTimeout, bandwidthMiBPerSecond: bandwidth)
    }

    private static func schedule(_ downtime: PolicyYAML) throws(PolicyFileError) -> DowntimeSchedule {
        let kindNode = downtime.optional("schedule")
        let kind = try kindNode?.string(what: "schedule") ?? "adaptive"
        func section(_ key: String) throws(PolicyFileError) -> PolicyYAML {
            guard let node = downtime.optional(key) else {
                throw (kindNode ?? downtime).error("schedule \(kind) needs a '\(key)' section")
            }
            return node
        }
        switch kind {
        case "fixed":
            guard let node = downtime.optional("fixed_ms") else {
                throw (kindNode ?? downtime).error("schedule fixed needs 'fixed_ms'")
            }
            return .fixed(milliseconds: try node.int(what: "fixed_ms", range: 1...2_000_000))
        case "nova":
            let nova = try section("nova")
            _ = try nova.mapping(allowedKeys: ["downtime_ms", "steps", "delay_s_per_gib"], what: "'nova'")
            return .nova(
                downtimeMilliseconds: try nova.required("downtime_ms", in: "'nova'").int(
                    what: "downtime_ms", range: 1...2_000_000),
                steps: try nova.required("steps", in: "'nova'").int(what: "steps", range: 1...1000),
                delaySecondsPerGiB: Double(
                    try nova.required("delay_s_per_gib", in: "'nova'").int(what: "delay_s_per_gib", range: 0...10_000)))
        case "stalled-iterations":
            let stalled = try section("stalled_iterations")
            _ = try stalled.mapping(allowedKeys: ["steps", "abort_after"], what: "'stalled_iterations'")
            var steps: [StalledStep] = []
            for entry in try stalled.required("steps", in: "'stalled_iterations'").sequence(what: "steps") {
                _ = try entry.mapping(allowedKeys: ["after", "ms"], what: "a stalled-iterations step")
                let after = try entry.required("after", in: "a step").int(what: "after", range: 1...10_000)
                if let last = steps.last, after <= last.stalledIterations {
                    throw entry.error("steps must be in increasing order of 'after'")
                }
                steps.append(
                    StalledStep(
                        stalledIterations: after,
                        milliseconds: try entry.required("ms", in: "a step").int(what: "ms", range: 1...2_000_000)))
            }
            let abortAfter = try stalled.required("abort_after", in: "'stalled_iterations'").int(
                what: "abort_after", range: 1...10_000)
            if let last = steps.last, abortAfter <= last.stalledIterations {
                throw stalled.error("abort_after must come after the last step")
            }
            return .stalledIterations(steps: steps, abortAfter: abortAfter)
        case "doubling":
            let doubling = try section("doubling")
            _ = try doubling.mapping(allowedKeys: ["start_ms"], what: "'doubling'")
            return .doubling(
                startMilliseconds: try doubling.required("start_ms", in: "'doubling'").int(
                    what: "start_ms", range: 1...2_000_000))
        case "adaptive":
            var initial = 300
            var margin = 1.25
            if let adaptive = downtime.optional("adaptive") {
                _ = try adaptive.mapping(allowedKeys: ["initial_ms", "margin_percent"], what: "'adaptive'")
                if let node = adaptive.optional("initial_ms") {
                    initial = try node.int(what: "initial_ms", range: 1...2_000_000)
                }
                if let node = adaptive.optional("margin_percent") {
                    margin = 1 + Double(try node.int(what: "margin_percent", range: 0...1000)) / 100
                }
            }
            return .adaptive(initialMilliseconds: initial, margin: margin)
        default:
            throw (kindNode ?? downtime).error(
                "schedule must be adaptive, nova, stalled-iterations, doubling or fixed, found '\(kind)'")
        }
    }
}
