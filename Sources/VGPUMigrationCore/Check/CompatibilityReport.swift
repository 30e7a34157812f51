/// One result of the pre-flight check: which check, how it came out, why, and what to do.
package struct CompatibilityFinding: Sendable, Hashable, Codable {
    package enum Severity: String, Sendable, Hashable, Codable, Comparable {
        /// The check does not apply to this VM (an NVIDIA-only rule, and the VM's mediated
        /// devices are of another kind); the message says why.
        case notApplicable = "n/a"
        case pass, warn, fail

        private var rank: Int {
            switch self {
            case .notApplicable: -1
            case .pass: 0
            case .warn: 1
            case .fail: 2
            }
        }

        package static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    /// Stable id of the check (`driver.version`); `--force` names these.
    package var check: String
    package var severity: Severity
    package var message: String
    package var remedy: String?

    package init(_ check: String, _ severity: Severity, _ message: String, remedy: String? = nil) {
        self.check = check
        self.severity = severity
        self.message = message
        self.remedy = remedy
    }
}

/// The pre-flight check of one VM from one host to another.
package struct CompatibilityReport: Sendable, Hashable, Codable {
    package var schemaVersion = 1
    package var vm: String
    package var source: String
    package var destination: String
    package var policy: String
    package var findings: [CompatibilityFinding]
    package var estimate: MigrationEstimate?

    package init(
        vm: String, source: String, destination: String, policy: String, findings: [CompatibilityFinding],
        estimate: MigrationEstimate?
    ) {
        self.vm = vm
        self.source = source
        self.destination = destination
        self.policy = policy
        self.findings = findings
        self.estimate = estimate
    }

    /// `fail` if any check fails, else `warn` if any warns, else `pass`.
    package var verdict: CompatibilityFinding.Severity {
        max(findings.map(\.severity).max() ?? .pass, .pass)
    }

    /// True when nothing fails.
    package var compatible: Bool { verdict != .fail }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case vm, source, destination, policy, findings, estimate, verdict, compatible
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = try container.decode(Int.self, forKey: .schemaVersion)
        vm = try container.decode(String.self, forKey: .vm)
        source = try container.decode(String.self, forKey: .source)
        destination = try container.decode(String.self, forKey: .destination)
        policy = try container.decode(String.self, forKey: .policy)
        findings = try container.decode([CompatibilityFinding].self, forKey: .findings)
        estimate = try container.decodeIfPresent(MigrationEstimate.self, forKey: .estimate)
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(vm, forKey: .vm)
        try container.encode(source, forKey: .source)
        try container.encode(destination, forKey: .destination)
        try container.encode(policy, forKey: .policy)
        try container.encode(findings, forKey: .findings)
        try container.encodeIfPresent(estimate, forKey: .estimate)
        try container.encode(verdict, forKey: .verdict)
        try container.encode(compatible, forKey: .compatible)
    }
}
