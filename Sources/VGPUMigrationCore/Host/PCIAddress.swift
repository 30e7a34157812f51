/// A PCI function address such as `0000:3b:00.4` (domain:bus:slot.function).
package struct PCIAddress: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    package var domain: UInt32
    package var bus: UInt8
    package var slot: UInt8
    package var function: UInt8

    package init(domain: UInt32, bus: UInt8, slot: UInt8, function: UInt8) {
        self.domain = domain
        self.bus = bus
        self.slot = slot
        self.function = function
    }

    /// Parses the sysfs form `DDDD:BB:SS.F` (hex digits, function 0-7). Returns nil for
    /// anything else, so a path component can be checked before it is used in a path.
    package init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2 else { return nil }
        let slotAndFunction = parts[2].split(separator: ".", omittingEmptySubsequences: false)
        guard slotAndFunction.count == 2, slotAndFunction[0].count == 2, slotAndFunction[1].count == 1,
            [parts[0], parts[1], slotAndFunction[0], slotAndFunction[1]].allSatisfy({ $0.allSatisfy(\.isASCIIHexDigit) }
            ),
            let domain = UInt32(parts[0], radix: 16), let bus = UInt8(parts[1], radix: 16),
            let slot = UInt8(slotAndFunction[0], radix: 16), let function = UInt8(slotAndFunction[1], radix: 16),
            slot < 32, function < 8
        else { return nil }
        self.init(domain: domain, bus: bus, slot: slot, function: function)
    }

    /// The sysfs spelling, lower-case hex: `0000:3b:00.4`.
    package var description: String {
        hex(domain, width: 4) + ":" + hex(bus, width: 2) + ":" + hex(slot, width: 2) + "." + String(function, radix: 16)
    }

    /// libvirt's node-device name for this function: `pci_0000_3b_00_4`.
    package var nodeDeviceName: String {
        "pci_" + hex(domain, width: 4) + "_" + hex(bus, width: 2) + "_" + hex(slot, width: 2) + "_"
            + String(function, radix: 16)
    }

    package static func < (lhs: PCIAddress, rhs: PCIAddress) -> Bool {
        (lhs.domain, lhs.bus, lhs.slot, lhs.function) < (rhs.domain, rhs.bus, rhs.slot, rhs.function)
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = PCIAddress(text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "'\(text)' is not a PCI address of the form 0000:3b:00.4")
        }
        self = address
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

func hex(_ value: some BinaryInteger, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Vendor, device and subsystem ids of a PCI function.
package struct PCIIdentity: Sendable, Hashable, Codable {
    package var vendor: UInt16
    package var device: UInt16
    package var subsystemVendor: UInt16?
    package var subsystemDevice: UInt16?

    package init(vendor: UInt16, device: UInt16, subsystemVendor: UInt16? = nil, subsystemDevice: UInt16? = nil) {
        self.vendor = vendor
        self.device = device
        self.subsystemVendor = subsystemVendor
        self.subsystemDevice = subsystemDevice
    }

    package static let nvidiaVendorID: UInt16 = 0x10de

    enum CodingKeys: String, CodingKey {
        case vendor, device
        case subsystemVendor = "subsystem_vendor"
        case subsystemDevice = "subsystem_device"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func id(_ key: CodingKeys) throws -> UInt16? {
            guard let text = try container.decodeIfPresent(String.self, forKey: key) else { return nil }
            guard let value = parsePCIIDNumber(text) else {
                throw DecodingError.dataCorruptedError(
                    forKey: key, in: container, debugDescription: "'\(text)' is not a 16-bit hex PCI id")
            }
            return value
        }
        guard let vendor = try id(.vendor), let device = try id(.device) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: container.codingPath, debugDescription: "vendor and device ids are required"))
        }
        self.init(
            vendor: vendor, device: device, subsystemVendor: try id(.subsystemVendor),
            subsystemDevice: try id(.subsystemDevice))
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(hex(vendor, width: 4), forKey: .vendor)
        try container.encode(hex(device, width: 4), forKey: .device)
        try container.encodeIfPresent(subsystemVendor.map { hex($0, width: 4) }, forKey: .subsystemVendor)
        try container.encodeIfPresent(subsystemDevice.map { hex($0, width: 4) }, forKey: .subsystemDevice)
    }
}

/// Parses a PCI id as sysfs (`0x10de`) or libvirt (`0x10de`) or tables (`10de`) write it.
package func parsePCIIDNumber(_ text: some StringProtocol) -> UInt16? {
    var digits = Substring(text)
    if digits.hasPrefix("0x") || digits.hasPrefix("0X") { digits = digits.dropFirst(2) }
    guard !digits.isEmpty, digits.count <= 4, digits.allSatisfy(\.isASCIIHexDigit) else { return nil }
    return UInt16(digits, radix: 16)
}

extension Character {
    /// 0-9, a-f, A-F only (``Character/isHexDigit`` also accepts full-width forms).
    package var isASCIIHexDigit: Bool {
        guard let ascii = asciiValue else { return false }
        return (ascii >= 0x30 && ascii <= 0x39) || (ascii >= 0x41 && ascii <= 0x46) || (ascii >= 0x61 && ascii <= 0x66)
    }

    /// 0-9 only.
    package var isASCIIDigit: Bool {
        guard let ascii = asciiValue else { return false }
        return ascii >= 0x30 && ascii <= 0x39
    }
}
