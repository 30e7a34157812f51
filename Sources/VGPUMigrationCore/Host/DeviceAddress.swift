/// Where a device that carries vGPUs sits on its host: a PCI function (`0000:3b:00.4`: every
/// GPU, its SR-IOV VFs, an Intel iGPU), or an mdev parent that is on no PCI bus, by the name
/// the kernel lists it under in `/sys/class/mdev_bus` (the kernel's sample driver mtty: `mtty`).
///
/// Its JSON and text form is that one string, so a PCI address reads as it always has.
package enum DeviceAddress: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    case pci(PCIAddress)
    /// A device that is not a PCI function, named as in `/sys/class/mdev_bus`.
    case named(String)

    /// A PCI address when `text` is one, else a device name when `text` is safe to use as one
    /// path component in sysfs; nil for anything else (empty, `.`, `..`, a `/`, spaces,
    /// control characters, longer than 64).
    package init?(_ text: some StringProtocol) {
        if let address = PCIAddress(text) {
            self = .pci(address)
            return
        }
        guard Self.isDeviceName(text) else { return nil }
        self = .named(String(text))
    }

    /// Letters, digits, `-`, `_`, `.`, `:` (what kernel device names use), 1 to 64 of them,
    /// never `.` or `..`.
    package static func isDeviceName(_ text: some StringProtocol) -> Bool {
        guard !text.isEmpty, text.count <= 64, text != ".", text != ".." else { return false }
        return text.allSatisfy { character in
            character.isASCII && (character.isLetter || character.isNumber || "-_.:".contains(character))
        }
    }

    /// The PCI function, when the device is one.
    package var pciAddress: PCIAddress? {
        if case .pci(let address) = self { return address }
        return nil
    }

    package var description: String {
        switch self {
        case .pci(let address): address.description
        case .named(let name): name
        }
    }

    /// PCI functions first, in address order, then named devices by name.
    package static func < (lhs: DeviceAddress, rhs: DeviceAddress) -> Bool {
        switch (lhs, rhs) {
        case (.pci(let a), .pci(let b)): a < b
        case (.pci, .named): true
        case (.named, .pci): false
        case (.named(let a), .named(let b)): a < b
        }
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = DeviceAddress(text) else {
            throw DecodingError.dataCorruptedError(
                in: container,
                debugDescription: "'\(text)' is neither a PCI address (0000:3b:00.4) nor a device name such as mtty")
        }
        self = address
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension KeyedDecodingContainer {
    /// The device address at `key` of a vGPU of `interface`; a vendor-specific vGPU is its VF, so
    /// its address must be a PCI function.
    func decodeFunction(_ key: Key, of interface: VGPUInterface) throws -> DeviceAddress {
        let function = try decode(DeviceAddress.self, forKey: key)
        if interface == .vendorVFIO && function.pciAddress == nil {
            throw DecodingError.dataCorruptedError(
                forKey: key, in: self,
                debugDescription: "a vendor-specific vGPU's function must be a PCI address, not '\(function)'")
        }
        return function
    }
}
