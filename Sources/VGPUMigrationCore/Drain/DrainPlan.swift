/// Where each VM of a drained host goes, decided for all of them together: what `drain
/// --dry-run` prints and what a drain runs and records.
package struct DrainPlan: Sendable, Hashable, Codable {
    /// Where one vGPU of a VM lands.
    package struct VGPUPlacement: Sendable, Hashable, Codable {
        /// The vGPU as the VM's XML names it on the source (mdev UUID or VF address).
        package var source: String
        /// Its type id (`nvidia-232`, `mtty-2`).
        package var type: String
        /// The type's name, when the host gives one.
        package var typeName: String?
        /// The destination GPU (or mdev parent) booked for it.
        package var gpu: DeviceAddress
        /// The function booked on that GPU: a VF, or the mdev parent itself.
        package var function: DeviceAddress

        package init(source: String, type: String, typeName: String?, gpu: DeviceAddress, function: DeviceAddress) {
            self.source = source
            self.type = type
            self.typeName = typeName
            self.gpu = gpu
            self.function = function
        }

        enum CodingKeys: String, CodingKey {
            case source, type
            case typeName = "type_name"
            case gpu, function
        }
    }

    /// One VM's move.
    package struct Placement: Sendable, Hashable, Codable {
        package var vm: String
        package var source: String
        package var destination: String
        package var vgpus: [VGPUPlacement]
        /// The check's estimate for this move.
        package var estimate: MigrationEstimate?
        /// The check's warnings for this move (`check` prints them too).
        package var warnings: [String]

        package init(
            vm: String, source: String, destination: String, vgpus: [VGPUPlacement], estimate: MigrationEstimate?,
            warnings: [String]
        ) {
            self.vm = vm
            self.source = source
            self.destination = destination
            self.vgpus = vgpus
            self.estimate = estimate
            self.warnings = warnings
        }
    }

    /// A VM no destination can take, and why.
    package struct Refusal: Sendable, Hashable, Codable {
        package var vm: String
        package var source: String
        /// One line per destination (or group of destinations) that refused, in the check's words.
        package var reasons: [String]

        package init(vm: String, source: String, reasons: [String]) {
            self.vm = vm
            self.source = source
            self.reasons = reasons
        }
    }

    /// A host that was not considered as a destination.
    package struct SkippedHost: Sendable, Hashable, Codable {
        package var host: String
        package var reason: String

        package init(host: String, reason: String) {
            self.host = host
            self.reason = reason
        }
    }

    package var schemaVersion = 1
    package var policy: String
    /// The moves, in the order a drain starts them (the longest first).
    package var placements: [Placement]
    /// VMs that cannot be moved, with the reasons.
    package var unplaced: [Refusal]
    /// Hosts left out: cordoned, unreachable, or the host being drained.
    package var skipped: [SkippedHost]

    package init(policy: String, placements: [Placement], unplaced: [Refusal], skipped: [SkippedHost]) {
        self.policy = policy
        self.placements = placements
        self.unplaced = unplaced
        self.skipped = skipped
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case policy, placements, unplaced, skipped
    }

    /// The placement of VM `name`.
    package func placement(of name: String) -> Placement? {
        placements.first { $0.vm == name }
    }
}

/// How many migrations a drain runs at once: in all, out of one host, into one host. The
/// defaults follow KubeVirt's (2 outbound per node, 5 per cluster); inbound is 2 per host.
package struct DrainLimits: Sendable, Hashable, Codable {
    package static let defaultParallel = 5
    package static let defaultOutboundPerHost = 2
    package static let defaultInboundPerHost = 2

    package var parallel: Int
    package var outboundPerHost: [String: Int]
    package var inboundPerHost: [String: Int]
    package var defaultOutbound: Int
    package var defaultInbound: Int

    package init(
        parallel: Int = defaultParallel, defaultOutbound: Int = defaultOutboundPerHost,
        defaultInbound: Int = defaultInboundPerHost, outboundPerHost: [String: Int] = [:],
        inboundPerHost: [String: Int] = [:]
    ) {
        self.parallel = max(1, parallel)
        self.defaultOutbound = max(1, defaultOutbound)
        self.defaultInbound = max(1, defaultInbound)
        self.outboundPerHost = outboundPerHost
        self.inboundPerHost = inboundPerHost
    }

    package func outbound(_ host: String) -> Int { max(1, outboundPerHost[host] ?? defaultOutbound) }
    package func inbound(_ host: String) -> Int { max(1, inboundPerHost[host] ?? defaultInbound) }

    enum CodingKeys: String, CodingKey {
        case parallel
        case outboundPerHost = "outbound_per_host"
        case inboundPerHost = "inbound_per_host"
        case defaultOutbound = "default_outbound"
        case defaultInbound = "default_inbound"
    }
}

/// The order a drain's migrations start in under its limits.
package enum DrainSchedule {
    /// The next placements to start, given those running: in plan order, each one whose
    /// source and destination are under their limits, while fewer than `limits.parallel` run.
    package static func startable(
        pending: [DrainPlan.Placement], running: [DrainPlan.Placement], limits: DrainLimits
    ) -> [DrainPlan.Placement] {
        var outbound: [String: Int] = [:]
        var inbound: [String: Int] = [:]
        for placement in running {
            outbound[placement.source, default: 0] += 1
            inbound[placement.destination, default: 0] += 1
        }
        var count = running.count
        var chosen: [DrainPlan.Placement] = []
        for placement in pending where count < limits.parallel {
            guard outbound[placement.source, default: 0] < limits.outbound(placement.source),
                inbound[placement.destination, default: 0] < limits.inbound(placement.destination)
            else { continue }
            outbound[placement.source, default: 0] += 1
            inbound[placement.destination, default: 0] += 1
            count += 1
            chosen.append(placement)
        }
        return chosen
    }

    /// The drain's expected duration: the plan run under `limits` with each migration taking
    /// its estimated total time (0 when it has no estimate).
    package static func expectedSeconds(_ plan: DrainPlan, limits: DrainLimits) -> Double {
        var pending = plan.placements
        var running: [(placement: DrainPlan.Placement, ends: Double)] = []
        var now = 0.0
        while !pending.isEmpty || !running.isEmpty {
            let started = startable(pending: pending, running: running.map(\.placement), limits: limits)
            for placement in started {
                running.append((placement, now + (placement.estimate?.totalSeconds ?? 0)))
            }
            let startedVMs = Set(started.map(\.vm))
            pending.removeAll { startedVMs.contains($0.vm) }
            guard let next = running.map(\.ends).min() else { break }
            now = next
            running.removeAll { $0.ends <= now }
        }
        return now
    }
}
