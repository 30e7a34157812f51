import Foundation
import Testing

@testable import VGPUMigrationCore

@Suite("Device addresses")
struct DeviceAddressTests {
    @Test("a PCI address reads as one; a kernel device name reads as a named device")
    func parses() {
        #expect(DeviceAddress("0000:3b:00.4") == .pci(PCIAddress(domain: 0, bus: 0x3b, slot: 0, function: 4)))
        #expect(DeviceAddress("mtty") == .named("mtty"))
        #expect(DeviceAddress("ap_matrix") == .named("ap_matrix"))
        #expect(DeviceAddress("0000:3b:00.4")?.description == "0000:3b:00.4")
        #expect(DeviceAddress("mtty")?.pciAddress == nil)
    }

    @Test(
        "refuses what could walk out of a sysfs directory or is no device name",
        arguments: ["", ".", "..", "../mtty", "a/b", "two words", "tab\there", String(repeating: "x", count: 65), "é"])
    func refuses(text: String) {
        #expect(DeviceAddress(text) == nil)
    }

    @Test("JSON is the plain string; a bad one is a decoding error that names it")
    func json() throws {
        let addresses: [DeviceAddress] = [.named("mtty"), .pci(PCIAddress("0000:ca:00.4")!)]
        let data = try JSONEncoder().encode(addresses)
        #expect(String(decoding: data, as: UTF8.self) == #"["mtty","0000:ca:00.4"]"#)
        #expect(try JSONDecoder().decode([DeviceAddress].self, from: data) == addresses)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([DeviceAddress].self, from: Data(#"["../x"]"#.utf8))
        }
    }

    @Test("a vendor-specific vGPU on a device that is not PCI is refused when decoded")
    func vendorVGPUNeedsPCI() {
        let json = #"{"id":"mtty","interface":"vendor-vfio","type_id":"1152","function":"mtty","gpu":"mtty"}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ReservedDevice.self, from: Data(json.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(ExistingVGPU.self, from: Data(json.utf8)) }
    }

    @Test("PCI functions sort before named devices")
    func order() {
        let sorted = [DeviceAddress.named("mtty"), .named("ap_matrix"), DeviceAddress("0000:3b:00.0")!].sorted()
        #expect(sorted.map(\.description) == ["0000:3b:00.0", "ap_matrix", "mtty"])
    }
}
