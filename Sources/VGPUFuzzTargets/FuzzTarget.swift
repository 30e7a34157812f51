import Foundation
import VGPUHost
import VGPUMigrationCore
import VGPUPolicies

/// One reader of outside input, driven by arbitrary bytes. A target returns for every input:
/// errors are answers; a crash, a hang or a broken invariant (checked with `precondition`) is
/// what the fuzzer looks for.
package enum FuzzTarget: String, CaseIterable, Sendable {
    /// The XML reader: one document, and a run of top-level elements.
    case xml
    /// The guest domain model and the destination-XML rewrite; a rewritten domain must read again.
    case domain
    /// libvirt node-device XML into physical GPUs.
    case nodeDevices = "node-devices"
    /// The sysfs probe over a generated tree (``MemorySysfs``'s archive form).
    case sysfs
    /// Every YAML file the operator edits: policy, board table, backports, inventory, settings.
    case policyYAML = "policy-yaml"
    /// The agent's request decoding: a reservation request body, and a reservation id.
    case agentRequest = "agent-request"

    /// Every target's name, for messages.
    package static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// What one input is: the target's name, then what it reads.
    package var summary: String {
        switch self {
        case .xml: "XML reader (bytes as a document and as a run of elements)"
        case .domain: "domain XML model and destination rewrite"
        case .nodeDevices: "libvirt node-device XML into GPUs"
        case .sysfs: "sysfs probe over a tree in memory (NUL-separated records)"
        case .policyYAML: "policy, board table, backport, inventory and settings YAML"
        case .agentRequest: "agent reservation request body and reservation id"
        }
    }

    /// Runs one input through the target.
    package func run(_ bytes: some Collection<UInt8>, catalog: GPUBoardCatalog) {
        switch self {
        case .xml:
            guard let text = try? UTF8Text.decode(bytes) else { return }
            if let document = try? XMLReader.parseDocument(text) {
                precondition(document.root.sourceRange.upperBound <= document.source.count)
            }
            _ = try? XMLReader.parseElements(text)
        case .domain:
            guard let text = try? UTF8Text.decode(bytes), let domain = try? GuestDomain.parse(xml: text) else { return }
            Self.rewriteRoundTrip(text, domain: domain)
        case .nodeDevices:
            guard let text = try? UTF8Text.decode(bytes), let devices = try? NodeDevice.parseAll(xml: text) else {
                return
            }
            _ = NodeDeviceInventory.physicalGPUs(devices: devices, catalog: catalog)
        case .sysfs:
            let tree = MemorySysfs(archive: bytes)
            if let inventory = try? SysfsHostProbe(sysfs: tree, catalog: catalog).inventory() {
                _ = try? JSONEncoder().encode(inventory)
            }
        case .policyYAML:
            guard let text = try? UTF8Text.decode(bytes) else { return }
            _ = try? MigrationPolicyFile.parseMigrationPolicy(text, name: "fuzz", file: "fuzz.yaml")
            _ = try? GPUBoardCatalogFile.parse(text, file: "fuzz.yaml")
            _ = try? KernelBackportsFile.parse(text, file: "fuzz.yaml")
            _ = try? HostInventoryFile.parse(text, file: "fuzz.yaml")
            _ = try? CoordinatorConfigFile.parse(text, file: "fuzz.yaml")
        case .agentRequest:
            if let request = try? ReservationRequest.decode(body: Data(bytes)) {
                precondition(request.problem == nil && isSafeTypeID(request.typeID))
            }
            if let text = try? UTF8Text.decode(bytes.prefix(64)), let id = canonicalUUID(text) {
                precondition(canonicalUUID(id) == id)
            }
        }
    }

    /// Each vGPU moved to a new device; the rewritten XML must read as the same domain with
    /// the new devices.
    private static func rewriteRoundTrip(_ text: String, domain: GuestDomain) {
        var mapping: [HostdevSource: HostdevSource] = [:]
        for (index, hostdev) in domain.mdevHostdevs.enumerated() {
            let suffix = String(index + 1, radix: 16).leftPadded(to: 12)
            mapping[hostdev.source] = .mdev(uuid: "00000000-0000-4000-8000-\(suffix)")
        }
        guard let rewritten = try? DomainXMLRewriter.rewrite(text, mapping: mapping) else { return }
        guard let again = try? GuestDomain.parse(xml: rewritten) else {
            preconditionFailure("the rewritten domain XML does not read again")
        }
        precondition(again.name == domain.name && again.hostdevs.count == domain.hostdevs.count)
        precondition(Set(again.mdevHostdevs.map(\.source)) == Set(mapping.values))
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
