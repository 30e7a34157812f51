/// A libvirt node device (`virNodeDeviceGetXMLDesc`), as far as vGPUs care.
package struct NodeDevice: Sendable, Hashable {
    package var name: String
    package var parent: String?
    /// The device's sysfs path, when libvirt gives it.
    package var path: String?
    /// `type` of the top-level `<capability>` (`pci`, `mdev`, `net`, `css`, `ap_matrix`, ...).
    package var capabilityType: String
    /// For `pci`: the function's address and ids.
    package var pci: PCIFunctionCapability?
    /// For `mdev`: the mediated device.
    package var mdev: MdevCapability?
    /// Nested `<capability type='mdev_types'>` of any parent device.
    package var mdevTypes: [NodeDeviceMdevType]

    /// Parses one `<device>` document.
    package static func parse(xml: String) throws(NodeDeviceXMLError) -> NodeDevice {
        do {
            return try NodeDevice(element: XMLReader.parseDocument(xml).root)
        } catch let error as XMLSyntaxError {
            throw NodeDeviceXMLError(device: nil, message: error.message, position: error.position)
        } catch let error as NodeDeviceXMLError {
            throw error
        } catch {
            throw NodeDeviceXMLError(device: nil, message: "\(error)", position: nil)
        }
    }

    /// Parses a text of one or more `<device>` elements in a row.
    package static func parseAll(xml: String) throws(NodeDeviceXMLError) -> [NodeDevice] {
        let elements: [XMLElement]
        do {
            elements = try XMLReader.parseElements(xml)
        } catch {
            throw NodeDeviceXMLError(device: nil, message: error.message, position: error.position)
        }
        var devices: [NodeDevice] = []
        for element in elements { devices.append(try NodeDevice(element: element)) }
        return devices
    }

    package init(element: XMLElement) throws(NodeDeviceXMLError) {
        guard element.name == "device" else {
            throw NodeDeviceXMLError(
                device: nil, message: "the root element is <\(element.name)>, expected <device>",
                position: element.position)
        }
        guard let name = element.child("name")?.trimmedText, !name.isEmpty else {
            throw NodeDeviceXMLError(device: nil, message: "the device has no <name>", position: element.position)
        }
        func fail(_ message: String, _ at: XMLElement) -> NodeDeviceXMLError {
            NodeDeviceXMLError(device: name, message: message, position: at.position)
        }
        guard let capability = element.child("capability") else {
            throw fail("the device has no <capability>", element)
        }
        guard let type = capability.attribute("type"), !type.isEmpty else {
            throw fail("<capability> has no 'type' attribute", capability)
        }
        self.name = name
        self.parent = element.child("parent")?.trimmedText
        self.path = element.child("path")?.trimmedText
        self.capabilityType = type

        var mdevTypes: [NodeDeviceMdevType] = []
        for nested in capability.children("capability") where nested.attribute("type") == "mdev_types" {
            for typeElement in nested.children("type") {
                guard let id = typeElement.attribute("id"), !id.isEmpty else {
                    throw fail("an mdev <type> has no 'id' attribute", typeElement)
                }
                guard let instancesElement = typeElement.child("availableInstances"),
                    let instances = Int(instancesElement.trimmedText), instances >= 0
                else {
                    throw fail("mdev type '\(id)' has no <availableInstances> with a whole number", typeElement)
                }
                guard let deviceAPI = typeElement.child("deviceAPI")?.trimmedText, !deviceAPI.isEmpty else {
                    throw fail("mdev type '\(id)' has no <deviceAPI>", typeElement)
                }
                mdevTypes.append(
                    NodeDeviceMdevType(
                        id: id, name: typeElement.child("name")?.trimmedText, deviceAPI: deviceAPI,
                        availableInstances: instances))
            }
        }
        self.mdevTypes = mdevTypes

        switch type {
        case "pci":
            func number(_ field: String, limit: UInt32) throws(NodeDeviceXMLError) -> UInt32 {
                guard let e = capability.child(field), let value = parseLibvirtNumber(e.trimmedText), value <= limit
                else {
                    throw fail("the PCI capability has no valid <\(field)> (0 to \(limit))", capability)
                }
                return value
            }
            let address = PCIAddress(
                domain: try number("domain", limit: 0xFFFF), bus: UInt8(try number("bus", limit: 0xFF)),
                slot: UInt8(try number("slot", limit: 0x1F)), function: UInt8(try number("function", limit: 7)))
            func id(_ field: String) throws(NodeDeviceXMLError) -> (UInt16, String?) {
                guard let e = capability.child(field), let text = e.attribute("id"), let value = parsePCIIDNumber(text)
                else {
                    throw fail("the PCI capability has no <\(field) id='0x....'>", capability)
                }
                let label = e.trimmedText
                return (value, label.isEmpty ? nil : label)
            }
            let product = try id("product")
            let vendor = try id("vendor")
            var physicalFunction: PCIAddress?
            var virtualFunctions: [PCIAddress] = []
            for nested in capability.children("capability") {
                switch nested.attribute("type") {
                case "phys_function":
                    guard let a = nested.child("address") else { throw fail("phys_function has no <address>", nested) }
                    physicalFunction = try Self.address(a, device: name)
                case "virt_functions":
                    for a in nested.children("address") { virtualFunctions.append(try Self.address(a, device: name)) }
                default:
                    break
                }
            }
            self.pci = PCIFunctionCapability(
                address: address, identity: PCIIdentity(vendor: vendor.0, device: product.0), vendorName: vendor.1,
                productName: product.1, physicalFunction: physicalFunction, virtualFunctions: virtualFunctions)
            self.mdev = nil
        case "mdev":
            guard let typeElement = capability.child("type"), let typeID = typeElement.attribute("id"), !typeID.isEmpty
            else {
                throw fail("the mdev capability has no <type id='...'>", capability)
            }
            var uuid: String?
            if let uuidElement = capability.child("uuid") {
                guard let canonical = canonicalUUID(uuidElement.trimmedText) else {
                    throw fail("mdev <uuid> '\(uuidElement.trimmedText)' is not a UUID", uuidElement)
                }
                uuid = canonical
            } else if name.hasPrefix("mdev_") {
                // Older libvirt names mdevs mdev_<uuid with underscores>[_<parent>] and omits <uuid>.
                let candidate = String(name.dropFirst(5).prefix(36).map { $0 == "_" ? "-" : $0 })
                uuid = canonicalUUID(candidate)
            }
            var iommuGroup: Int?
            if let group = capability.child("iommuGroup") {
                guard let text = group.attribute("number"), let value = Int(text), value >= 0 else {
                    throw fail("<iommuGroup> has no valid 'number'", group)
                }
                iommuGroup = value
            }
            self.mdev = MdevCapability(
                typeID: typeID, uuid: uuid, parentAddress: capability.child("parent_addr")?.trimmedText,
                iommuGroup: iommuGroup)
            self.pci = nil
        default:
            self.pci = nil
            self.mdev = nil
        }
    }

    private static func address(_ element: XMLElement, device: String) throws(NodeDeviceXMLError) -> PCIAddress {
        var values: [UInt32] = []
        for (field, limit) in [("domain", UInt32(0xFFFF)), ("bus", 0xFF), ("slot", 0x1F), ("function", 7)] {
            guard let text = element.attribute(field), let value = parseLibvirtNumber(text), value <= limit else {
                throw NodeDeviceXMLError(
                    device: device, message: "<address> has no valid '\(field)' (0 to \(limit))",
                    position: element.position)
            }
            values.append(value)
        }
        return PCIAddress(
            domain: values[0], bus: UInt8(values[1]), slot: UInt8(values[2]), function: UInt8(values[3]))
    }
}

/// The `pci` capability of a node device.
package struct PCIFunctionCapability: Sendable, Hashable {
    package var address: PCIAddress
    package var identity: PCIIdentity
    package var vendorName: String?
    package var productName: String?
    package var physicalFunction: PCIAddress?
    package var virtualFunctions: [PCIAddress]
}

/// The `mdev` capability of a node device.
package struct MdevCapability: Sendable, Hashable {
    package var typeID: String
    /// From `<uuid>`, or from the device name when libvirt leaves `<uuid>` out.
    package var uuid: String?
    package var parentAddress: String?
    package var iommuGroup: Int?
}

/// One `<type>` of a node device's `mdev_types` capability.
package struct NodeDeviceMdevType: Sendable, Hashable {
    package var id: String
    package var name: String?
    package var deviceAPI: String
    package var availableInstances: Int
}

/// A node-device XML that cannot be used.
package struct NodeDeviceXMLError: Error, Sendable, Hashable, CustomStringConvertible {
    package var device: String?
    package var message: String
    package var position: XMLPosition?

    package var description: String {
        var text = "node device XML"
        if let device { text += " '\(device)'" }
        if let position { text += ", \(position)" }
        return text + ": " + message
    }
}
