/// `check --to auto`: every candidate destination, compatible ones ranked first by estimated
/// downtime, then by how well the vGPUs pack, then by name.
package struct DestinationRanking: Sendable, Codable {
    package struct Candidate: Sendable, Codable {
        package var host: String
        /// The check against this host; nil when the host could not be read.
        package var report: CompatibilityReport?
        /// vGPUs of the VM's types already on the destination GPUs that can take one more:
        /// higher packs better (keeps other GPUs free for other types).
        package var packing: Int
        /// Why the host could not be read.
        package var unreachable: String?
        /// The host's cordon (under maintenance: no destination), when it has one.
        package var cordoned: String?

        package init(
            host: String, report: CompatibilityReport?, packing: Int, unreachable: String?, cordoned: String? = nil
        ) {
            self.host = host
            self.report = report
            self.packing = packing
            self.unreachable = unreachable
            self.cordoned = cordoned
        }

        package var compatible: Bool { cordoned == nil && report?.compatible == true }
        /// The failing checks, or the reason the host could not be read, or its cordon.
        package var reasons: [String] {
            if let cordoned { return ["cordoned: \(cordoned)"] }
            if let unreachable { return ["unreachable: \(unreachable)"] }
            return report?.findings.filter { $0.severity == .fail }.map { "\($0.check): \($0.message)" } ?? []
        }
    }

    package var schemaVersion = 1
    package var vm: String
    package var source: String
    package var policy: String
    /// Compatible hosts first, best first; then the incompatible ones by name.
    package var candidates: [Candidate]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case vm, source, policy, candidates
    }

    package init(vm: String, source: String, policy: String, candidates: [Candidate]) {
        self.vm = vm
        self.source = source
        self.policy = policy
        self.candidates = candidates.sorted { a, b in
            if a.compatible != b.compatible { return a.compatible }
            if a.compatible {
                let da = a.report?.estimate?.downtimeMilliseconds ?? .infinity
                let db = b.report?.estimate?.downtimeMilliseconds ?? .infinity
                if da != db { return da < db }
                if a.packing != b.packing { return a.packing > b.packing }
            }
            return a.host < b.host
        }
    }

    /// The best compatible destination.
    package var best: Candidate? { candidates.first { $0.compatible } }

    /// How many vGPUs of the VM's types already sit on destination GPUs that still have room
    /// for that type.
    package static func packing(of domain: GuestDomain, from source: HostInventory, on destination: HostInventory)
        -> Int
    {
        let typeIDs = Set(domain.vgpus(on: source).compactMap { $0.hostVGPU?.typeID })
        var score = 0
        for gpu in destination.gpus {
            for typeID in typeIDs {
                guard let capacity = gpu.capacity(ofType: typeID), capacity.free > 0 else { continue }
                score += capacity.used
            }
        }
        return score
    }
}
