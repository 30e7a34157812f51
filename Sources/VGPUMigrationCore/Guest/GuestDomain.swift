/// Where a host device given to a guest comes from: a mediated device or a PCI function.
package enum HostdevSource: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A VFIO mediated device, by its UUID (lower case).
    case mdev(uuid: String)
    /// A PCI function passed through, e.g. an SR-IOV VF carrying an NVIDIA vendor-specific vGPU.
    case pci(PCIAddress)

    package var description: String {
        switch self {
        case .mdev(let uuid): "mdev \(uuid)"
        case .pci(let address): "PCI \(address)"
        }
    }

    enum CodingKeys: String, CodingKey { case kind, uuid, address }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        switch try container.decode(String.self, forKey: .kind) {
        case "mdev":
            let uuid = try container.decode(String.self, forKey: .uuid)
            guard let canonical = canonicalUUID(uuid) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .uuid, in: container, debugDescription: "'\(uuid)' is not a UUID")
            }
            self = .mdev(uuid: canonical)
        case "pci":
            self = .pci(try container.decode(PCIAddress.self, forKey: .address))
        case let other:
            throw DecodingError.dataCorruptedError(
                forKey: .kind, in: container, debugDescription: "unknown hostdev kind '\(other)' (expected mdev or pci)"
            )
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case .mdev(let uuid):
            try container.encode("mdev", forKey: .kind)
            try container.encode(uuid, forKey: .uuid)
        case .pci(let address):
            try container.encode("pci", forKey: .kind)
            try container.encode(address, forKey: .address)
        }
    }
}

/// One `<hostdev mode='subsystem'>` of a domain.
package struct GuestHostdev: Sendable, Hashable {
    package var source: HostdevSource
    /// `model` of an mdev hostdev (`vfio-pci`, `vfio-ccw`, `vfio-ap`).
    package var model: String?
    /// `display='on'|'off'` of an mdev hostdev, if given.
    package var display: Bool?
    /// `ramfb='on'|'off'` of an mdev hostdev, if given.
    package var ramfb: Bool?
    /// `managed='yes'|'no'`, if given.
    package var managed: Bool?
    /// Where the element starts in the XML.
    package var position: XMLPosition
    /// Byte ranges of the source address attribute values (`uuid`, or `domain`/`bus`/`slot`/`function`).
    package var sourceValueRanges: [String: Range<Int>]
    /// Raw source attribute values, to keep their spelling when rewriting.
    package var sourceRawValues: [String: String]
}

/// A libvirt domain as far as migration cares: identity, size and host devices.
package struct GuestDomain: Sendable, Hashable {
    package var name: String
    package var uuid: String?
    /// The `type` attribute of `<domain>` (`kvm`, `qemu`, ...).
    package var hypervisorType: String
    /// `<memory>`: the maximum memory of the guest, in bytes.
    package var memoryBytes: UInt64
    /// `<currentMemory>` in bytes, if given.
    package var currentMemoryBytes: UInt64?
    /// `<vcpu>`: the maximum number of vCPUs.
    package var vcpus: Int
    /// `current` attribute of `<vcpu>`, if given.
    package var currentVCPUs: Int?
    /// Every `<hostdev mode='subsystem'>` of type `mdev` or `pci`, in document order.
    package var hostdevs: [GuestHostdev]
    /// `arch` of `<os><type>` (`x86_64`).
    package var architecture: String?
    /// `mode` of `<cpu>` (`custom`, `host-model`, `host-passthrough`, `maximum`); nil without `<cpu>`.
    package var cpuMode: String?
    /// The `<cpu>` element as written, for libvirt's CPU comparison (set by ``parse(xml:)``).
    package var cpuXML: String?

    /// The mediated devices given to the guest.
    package var mdevHostdevs: [GuestHostdev] {
        hostdevs.filter { if case .mdev = $0.source { true } else { false } }
    }

    /// The PCI functions passed through to the guest.
    package var pciHostdevs: [GuestHostdev] {
        hostdevs.filter { if case .pci = $0.source { true } else { false } }
    }

    /// Parses a domain XML document (root `<domain>`).
    package static func parse(xml: String) throws(DomainXMLError) -> GuestDomain {
        let document: XMLDocument
        do {
            document = try XMLReader.parseDocument(xml)
        } catch {
            throw DomainXMLError(message: error.message, position: error.position)
        }
        var domain = try GuestDomain(element: document.root)
        if let cpu = document.root.child("cpu") {
            domain.cpuXML = String(decoding: document.source[cpu.sourceRange], as: UTF8.self)
        }
        return domain
    }

    /// Reads a `<domain>` element; applies the checks libvirt applies to host devices.
    package init(element: XMLElement) throws(DomainXMLError) {
        guard element.name == "domain" else {
            throw DomainXMLError(
                message: "the root element is <\(element.name)>, expected <domain>", position: element.position)
        }
        guard let type = element.attribute("type"), !type.isEmpty else {
            throw DomainXMLError(message: "<domain> has no 'type' attribute", position: element.position)
        }
        guard let nameElement = element.child("name"), !nameElement.trimmedText.isEmpty else {
            throw DomainXMLError(message: "the domain has no <name>", position: element.position)
        }
        var uuid: String?
        if let uuidElement = element.child("uuid") {
            guard let canonical = canonicalUUID(uuidElement.trimmedText) else {
                throw DomainXMLError(
                    message: "<uuid> '\(uuidElement.trimmedText)' is not a UUID", position: uuidElement.position)
            }
            uuid = canonical
        }
        guard let memoryElement = element.child("memory") else {
            throw DomainXMLError(message: "the domain has no <memory>", position: element.position)
        }
        let memory = try Self.memoryBytes(memoryElement)
        let currentMemory = try element.child("currentMemory").map { (e) throws(DomainXMLError) in
            try Self.memoryBytes(e)
        }
        guard let vcpuElement = element.child("vcpu"), let vcpus = Int(vcpuElement.trimmedText), vcpus > 0 else {
            throw DomainXMLError(
                message: "the domain has no <vcpu> with a positive count",
                position: element.child("vcpu")?.position ?? element.position)
        }
        var currentVCPUs: Int?
        if let current = vcpuElement.attribute("current") {
            guard let value = Int(current), value > 0, value <= vcpus else {
                throw DomainXMLError(
                    message: "<vcpu current='\(current)'> must be between 1 and \(vcpus)",
                    position: vcpuElement.position)
            }
            currentVCPUs = value
        }

        var hostdevs: [GuestHostdev] = []
        for hostdevElement in element.child("devices")?.children("hostdev") ?? [] {
            guard hostdevElement.attribute("mode") ?? "subsystem" == "subsystem" else { continue }
            guard let hostdev = try Self.hostdev(hostdevElement) else { continue }
            if hostdevs.contains(where: { $0.source == hostdev.source }) {
                throw DomainXMLError(
                    message: "host device \(hostdev.source) is given to the guest twice; libvirt refuses this "
                        + "('Hostdev already exists in the domain configuration')",
                    position: hostdevElement.position)
            }
            hostdevs.append(hostdev)
        }

        self.name = nameElement.trimmedText
        self.uuid = uuid
        self.hypervisorType = type
        self.memoryBytes = memory
        self.currentMemoryBytes = currentMemory
        self.vcpus = vcpus
        self.currentVCPUs = currentVCPUs
        self.hostdevs = hostdevs
        self.architecture = element.child("os")?.child("type")?.attribute("arch")
        if let cpu = element.child("cpu") {
            self.cpuMode = cpu.attribute("mode") ?? "custom"
        }
    }

    private static func hostdev(_ element: XMLElement) throws(DomainXMLError) -> GuestHostdev? {
        let type = element.attribute("type")
        guard type == "mdev" || type == "pci" else { return nil }
        guard let address = element.child("source")?.child("address") else {
            throw DomainXMLError(
                message: "<hostdev type='\(type!)'> has no <source><address>", position: element.position)
        }
        let managed = try onOff(element, "managed", yes: "yes", no: "no")
        if type == "mdev" {
            guard let model = element.attribute("model") else {
                throw DomainXMLError(
                    message: "<hostdev type='mdev'> has no 'model' attribute (vfio-pci, vfio-ccw or vfio-ap)",
                    position: element.position)
            }
            guard ["vfio-pci", "vfio-ccw", "vfio-ap"].contains(model) else {
                throw DomainXMLError(
                    message:
                        "<hostdev type='mdev'> has unknown model '\(model)' (expected vfio-pci, vfio-ccw or vfio-ap)",
                    position: element.position)
            }
            guard let uuidAttribute = address.attributeRecord("uuid") else {
                throw DomainXMLError(
                    message: "the <source><address> of <hostdev type='mdev'> has no 'uuid' attribute "
                        + "(libvirt: Missing required attribute 'uuid' in element 'address')",
                    position: address.position)
            }
            guard let uuid = canonicalUUID(uuidAttribute.value) else {
                throw DomainXMLError(
                    message: "mdev uuid '\(uuidAttribute.value)' is not a UUID", position: uuidAttribute.position)
            }
            if let guestAddress = element.child("address"), let addressType = guestAddress.attribute("type"),
                model == "vfio-pci", addressType != "pci"
            {
                throw DomainXMLError(
                    message: "guest address type '\(addressType)' cannot be used with mediated device model "
                        + "'vfio-pci'; it needs a PCI address",
                    position: guestAddress.position)
            }
            let display = try onOff(element, "display", yes: "on", no: "off")
            if display == true && model != "vfio-pci" {
                throw DomainXMLError(
                    message: "display='on' is only supported with mediated device model 'vfio-pci'",
                    position: element.position)
            }
            return GuestHostdev(
                source: .mdev(uuid: uuid), model: model, display: display,
                ramfb: try onOff(element, "ramfb", yes: "on", no: "off"), managed: managed,
                position: element.position, sourceValueRanges: ["uuid": uuidAttribute.valueRange],
                sourceRawValues: ["uuid": uuidAttribute.value])
        }

        if let addressType = address.attribute("type"), addressType != "pci" {
            throw DomainXMLError(
                message: "the <source><address> of <hostdev type='pci'> has type '\(addressType)', expected 'pci'",
                position: address.position)
        }
        var ranges: [String: Range<Int>] = [:]
        var raw: [String: String] = [:]
        var values: [String: UInt32] = [:]
        let limits: [(String, UInt32)] = [("domain", 0xFFFF), ("bus", 0xFF), ("slot", 0x1F), ("function", 7)]
        for (field, limit) in limits {
            guard let attribute = address.attributeRecord(field) else {
                if field == "domain" {
                    values[field] = 0
                    continue
                }
                throw DomainXMLError(
                    message: "the <source><address> of <hostdev type='pci'> has no '\(field)' attribute",
                    position: address.position)
            }
            guard let value = parseLibvirtNumber(attribute.value), value <= limit else {
                throw DomainXMLError(
                    message: "PCI \(field) '\(attribute.value)' is not a number between 0 and \(limit)",
                    position: attribute.position)
            }
            values[field] = value
            ranges[field] = attribute.valueRange
            raw[field] = attribute.value
        }
        let pci = PCIAddress(
            domain: values["domain"]!, bus: UInt8(values["bus"]!), slot: UInt8(values["slot"]!),
            function: UInt8(values["function"]!))
        return GuestHostdev(
            source: .pci(pci), model: nil, display: nil, ramfb: nil, managed: managed, position: element.position,
            sourceValueRanges: ranges, sourceRawValues: raw)
    }

    private static func onOff(_ element: XMLElement, _ name: String, yes: String, no: String) throws(DomainXMLError)
        -> Bool?
    {
        guard let attribute = element.attributeRecord(name) else { return nil }
        switch attribute.value {
        case yes: return true
        case no: return false
        default:
            throw DomainXMLError(
                message: "\(name)='\(attribute.value)' must be '\(yes)' or '\(no)'", position: attribute.position)
        }
    }

    private static func memoryBytes(_ element: XMLElement) throws(DomainXMLError) -> UInt64 {
        let unit = element.attribute("unit") ?? "KiB"
        guard let multiplier = libvirtMemoryUnits[unit] else {
            throw DomainXMLError(
                message: "<\(element.name)> has unknown unit '\(unit)'", position: element.position)
        }
        guard let value = UInt64(element.trimmedText) else {
            throw DomainXMLError(
                message: "<\(element.name)> '\(element.trimmedText)' is not a whole number", position: element.position)
        }
        let (bytes, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else {
            throw DomainXMLError(message: "<\(element.name)> is too large", position: element.position)
        }
        return bytes
    }
}

/// Units libvirt accepts for memory sizes.
let libvirtMemoryUnits: [String: UInt64] = [
    "b": 1, "bytes": 1,
    "KB": 1000, "k": 1024, "K": 1024, "KiB": 1024,
    "MB": 1_000_000, "M": 1 << 20, "MiB": 1 << 20,
    "GB": 1_000_000_000, "G": 1 << 30, "GiB": 1 << 30,
    "TB": 1_000_000_000_000, "T": 1 << 40, "TiB": 1 << 40,
]

/// A domain XML that cannot be used, with where the problem is.
package struct DomainXMLError: Error, Sendable, Hashable, CustomStringConvertible {
    package var message: String
    package var position: XMLPosition?

    package var description: String {
        if let position { return "domain XML, \(position): \(message)" }
        return "domain XML: \(message)"
    }
}

/// A number as libvirt writes it in addresses: `0x1f` hex or decimal.
func parseLibvirtNumber(_ text: String) -> UInt32? {
    if text.hasPrefix("0x") || text.hasPrefix("0X") {
        let digits = text.dropFirst(2)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIIHexDigit) else { return nil }
        return UInt32(digits, radix: 16)
    }
    guard !text.isEmpty, text.allSatisfy(\.isASCIIDigit) else { return nil }
    return UInt32(text)
}

/// The canonical lower-case 8-4-4-4-12 spelling of a UUID, or nil if `text` is not one.
package func canonicalUUID(_ text: some StringProtocol) -> String? {
    let groups = text.split(separator: "-", omittingEmptySubsequences: false)
    guard groups.map(\.count) == [8, 4, 4, 4, 12], groups.allSatisfy({ $0.allSatisfy(\.isASCIIHexDigit) }) else {
        return nil
    }
    return text.lowercased()
}
