/// Produces the destination domain XML: each vGPU's source (mdev UUID or VF address) is
/// replaced by the device reserved on the destination.
///
/// The rewrite edits the bytes of the source attribute values only. Formatting, comments,
/// attribute order, quoting and every other element stay exactly as they were, so a text
/// diff of input and output shows the device identities and nothing else.
package enum DomainXMLRewriter {
    /// Rewrites `xml`.
    ///
    /// - Parameters:
    ///   - mapping: source device on this host → reserved device on the destination.
    ///   - vgpuSources: the guest devices that are host-local vGPUs and so must be mapped.
    ///     `nil` means every mdev hostdev of the domain.
    /// - Throws: ``DomainRewriteError`` when a vGPU has no mapping, a mapping names a device the
    ///   domain does not have, two devices map to one target, or a mapping changes the kind of
    ///   device (mdev ↔ PCI), which needs a different `<hostdev>` element, not a new address.
    package static func rewrite(
        _ xml: String, mapping: [HostdevSource: HostdevSource], vgpuSources: Set<HostdevSource>? = nil
    ) throws(DomainRewriteError) -> String {
        let document: XMLDocument
        let domain: GuestDomain
        do {
            document = try XMLReader.parseDocument(xml)
        } catch {
            throw .invalidDomain(DomainXMLError(message: error.message, position: error.position))
        }
        do {
            domain = try GuestDomain(element: document.root)
        } catch {
            throw .invalidDomain(error)
        }

        let required = vgpuSources ?? Set(domain.mdevHostdevs.map(\.source))
        let present = Set(domain.hostdevs.map(\.source))
        for source in required.sorted(by: { $0.description < $1.description }) where !present.contains(source) {
            throw .vgpuNotInDomain(source)
        }
        for source in mapping.keys.sorted(by: { $0.description < $1.description }) where !present.contains(source) {
            throw .mappingForUnknownDevice(source)
        }
        var targets: [HostdevSource: HostdevSource] = [:]
        for (source, target) in mapping {
            if let other = targets[target] {
                let pair = [other, source].sorted { $0.description < $1.description }
                throw .duplicateTarget(target, pair[0], pair[1])
            }
            targets[target] = source
        }

        var edits: [(range: Range<Int>, text: String)] = []
        for hostdev in domain.hostdevs {
            guard let target = mapping[hostdev.source] else {
                if required.contains(hostdev.source) { throw .unmappedDevice(hostdev.source) }
                continue
            }
            switch (hostdev.source, target) {
            case (.mdev, .mdev(let uuid)):
                edits.append((hostdev.sourceValueRanges["uuid"]!, uuid))
            case (.pci, .pci(let address)):
                let fields: [(String, UInt32, Int)] = [
                    ("domain", address.domain, 4), ("bus", UInt32(address.bus), 2),
                    ("slot", UInt32(address.slot), 2), ("function", UInt32(address.function), 1),
                ]
                for (field, value, width) in fields {
                    guard let range = hostdev.sourceValueRanges[field] else {
                        // The domain attribute was left out (it defaults to 0); a target in
                        // another PCI domain cannot be expressed by editing values alone.
                        if value != 0 { throw .cannotExpress(hostdev.source, target) }
                        continue
                    }
                    edits.append((range, spell(value, like: hostdev.sourceRawValues[field] ?? "", width: width)))
                }
            default:
                throw .kindMismatch(hostdev.source, target)
            }
        }

        var bytes = document.source
        for edit in edits.sorted(by: { $0.range.lowerBound > $1.range.lowerBound }) {
            bytes.replaceSubrange(edit.range, with: Array(edit.text.utf8))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Writes `value` the way the original attribute was written: `0x`-prefixed hex padded
    /// to at least the original digit count, or plain decimal.
    private static func spell(_ value: UInt32, like original: String, width: Int) -> String {
        if original.hasPrefix("0x") || original.hasPrefix("0X") {
            let digits = original.count - 2
            let upper = original.dropFirst(2).contains { $0.isUppercase }
            let text = hex(value, width: max(width, digits))
            return String(original.prefix(2)) + (upper ? text.uppercased() : text)
        }
        return String(value)
    }
}

/// Why a domain XML could not be rewritten for the destination.
package enum DomainRewriteError: Error, Sendable, Hashable, CustomStringConvertible {
    case invalidDomain(DomainXMLError)
    case unmappedDevice(HostdevSource)
    case vgpuNotInDomain(HostdevSource)
    case mappingForUnknownDevice(HostdevSource)
    case duplicateTarget(HostdevSource, HostdevSource, HostdevSource)
    case kindMismatch(HostdevSource, HostdevSource)
    case cannotExpress(HostdevSource, HostdevSource)

    package var description: String {
        switch self {
        case .invalidDomain(let error):
            "cannot rewrite the domain: \(error)"
        case .unmappedDevice(let source):
            "vGPU \(source) has no reserved device on the destination; reserve one before migrating"
        case .vgpuNotInDomain(let source):
            "vGPU \(source) was expected in the domain but the domain has no such host device"
        case .mappingForUnknownDevice(let source):
            "a destination device was given for \(source), which the domain does not have; the mapping is stale"
        case .duplicateTarget(let target, let first, let second):
            "\(first) and \(second) would both use \(target) on the destination; each vGPU needs its own device"
        case .kindMismatch(let source, let target):
            "\(source) cannot be replaced by \(target): the destination device is of another kind"
        case .cannotExpress(let source, let target):
            "\(source) has no PCI domain attribute, so it cannot be pointed at \(target) in another PCI domain"
        }
    }
}
