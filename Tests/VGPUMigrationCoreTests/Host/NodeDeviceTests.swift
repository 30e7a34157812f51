import Foundation
import Testing
import VGPUTestSupport

@testable import VGPUMigrationCore

@Suite("libvirt node devices")
struct NodeDeviceTests {
    static func realNodeDeviceFiles() throws -> [URL] {
        var files: [URL] = []
        for folder in ["libvirt", "nova"] {
            for url in try TestData.files(under: TestData.realdata.appendingPathComponent(folder), suffix: ".xml")
            where try XMLReader.parseElements(try TestData.text(url)).first?.name == "device" {
                files.append(url)
            }
        }
        return files
    }

    @Test("parses every real node-device XML (libvirt accepts them all)")
    func parsesEveryRealNodeDevice() throws {
        let files = try Self.realNodeDeviceFiles()
        #expect(files.count >= 40, "found \(files.count) under \(TestData.realdata.path)")
        var devices = 0
        for url in files {
            let parsed = try NodeDevice.parseAll(xml: try TestData.text(url))
            #expect(!parsed.isEmpty)
            devices += parsed.count
        }
        #expect(devices > files.count)  // mdevctl-list-multiple.out.xml holds five devices
    }

    @Test("reads a PCI parent's mdev types and an mdev's type and UUID")
    func readsMdevTypesAndMdev() throws {
        let folder = TestData.realdata.appendingPathComponent("libvirt/tests/nodedevschemadata")
        let parent = try NodeDevice.parse(
            xml: try TestData.text(folder.appendingPathComponent("pci_0000_02_10_7_mdev_types.xml")))
        #expect(parent.pci?.address == PCIAddress("0000:02:10.7"))
        #expect(parent.pci?.identity == PCIIdentity(vendor: 0x8086, device: 0x10ca))
        #expect(
            parent.mdevTypes == [
                NodeDeviceMdevType(id: "foo1", name: "bar1", deviceAPI: "vfio-pci", availableInstances: 1),
                NodeDeviceMdevType(id: "foo2", name: "bar2", deviceAPI: "vfio-pci", availableInstances: 2),
            ])
        let sriov = try NodeDevice.parse(
            xml: try TestData.text(folder.appendingPathComponent("pci_0000_02_10_7_sriov.xml")))
        #expect(sriov.pci?.physicalFunction == PCIAddress("0000:02:00.1"))
        let vfs = try NodeDevice.parse(
            xml: try TestData.text(folder.appendingPathComponent("pci_0000_02_10_7_sriov_vfs.xml")))
        #expect(vfs.pci?.virtualFunctions.count == 4)
        let mdev = try NodeDevice.parse(
            xml: try TestData.text(folder.appendingPathComponent("mdev_d069d019_36ea_4111_8f0a_8c9a70e21366.xml")))
        #expect(mdev.mdev?.typeID == "i915-GVTg_V5_8")
        #expect(mdev.mdev?.uuid == "d069d019-36ea-4111-8f0a-8c9a70e21366")
        #expect(mdev.parent == "pci_0000_00_02_0")
    }

    @Test("takes an mdev's UUID from its name when libvirt leaves <uuid> out")
    func uuidFromName() throws {
        let url = TestData.realdata.appendingPathComponent(
            "nova/rendered/mdev_4b20d080_1b54_4048_85b3_a6a62d165c01.xml")
        let mdev = try NodeDevice.parse(xml: try TestData.text(url))
        #expect(mdev.mdev?.uuid == "4b20d080-1b54-4048-85b3-a6a62d165c01")
    }

    @Test("builds GPUs from nova's M60 node devices: three parents, each with its mdev")
    func buildsInventoryFromNovaDevices() throws {
        let folder = TestData.realdata.appendingPathComponent("nova/rendered")
        let devices = try TestData.files(under: folder, suffix: ".xml").flatMap {
            try NodeDevice.parseAll(xml: try TestData.text($0))
        }
        let (gpus, diagnostics) = NodeDeviceInventory.physicalGPUs(
            devices: devices, catalog: GPUBoardCatalog(boards: []))
        #expect(gpus.map(\.address.description) == ["0000:81:00.0", "0000:81:01.0", "0000:81:02.0"])
        #expect(
            gpus.map { $0.vgpus.map(\.id) } == [
                ["4b20d080-1b54-4048-85b3-a6a62d165c01"], ["4b20d080-1b54-4048-85b3-a6a62d165c02"],
                ["4b20d080-1b54-4048-85b3-a6a62d165c03"],
            ])
        let first = try #require(gpus.first)
        #expect(first.capacity(ofType: "nvidia-11")?.used == 1)
        #expect(first.capacity(ofType: "nvidia-11")?.free == 16)
        // Unknown boards are reported, not guessed.
        #expect(diagnostics.filter { $0.message.contains("not in the board table") }.count == 3)
    }

    @Test("mdev parents that are not NVIDIA GPUs: Intel GVT-g on PCI, and s390's AP matrix on no PCI bus")
    func otherParents() throws {
        let gvt = try NodeDevice.parse(
            xml: try TestData.text(
                TestData.realdata.appendingPathComponent("nova/libvirt_data/_fake_NodeDevXml/pci_0000_06_00_1.xml")))
        let matrix = try NodeDevice.parse(
            xml: try TestData.text(
                TestData.realdata.appendingPathComponent("libvirt/tests/nodedevschemadata/ap_matrix_mdev_types.xml")))
        let (gpus, diagnostics) = NodeDeviceInventory.physicalGPUs(
            devices: [gvt, matrix], catalog: GPUBoardCatalog(boards: []))
        #expect(gpus.map(\.address) == [DeviceAddress("0000:06:00.1"), .named("ap_matrix")])
        #expect(gpus.allSatisfy { !$0.isNVIDIA })
        #expect(gpus[0].pci?.vendor == 0x8086)
        #expect(gpus[0].capacity(ofType: "i915-GVTg_V5_8")?.free == 2)
        #expect(gpus[0].capacity(ofType: "i915-GVTg_V5_8")?.type.deviceAPI == "vfio-pci")
        #expect(gpus[1].capacity(ofType: "vfio_ap-passthrough")?.type.deviceAPI == "vfio-ap")
        // Not NVIDIA boards: nothing to look up in the board table.
        #expect(diagnostics.isEmpty, "\(diagnostics)")
    }

    @Test(
        "refuses node-device XML libvirt would not produce, naming the device",
        arguments: [
            ("<device><capability type='pci'/></device>", "no <name>"),
            ("<device><name>x</name></device>", "no <capability>"),
            (
                "<device><name>pci_x</name><capability type='pci'><domain>0</domain><bus>999</bus><slot>0</slot><function>0</function></capability></device>",
                "<bus>"
            ),
            ("<device><name>mdev_x</name><capability type='mdev'/></device>", "no <type"),
            (
                "<device><name>mdev_x</name><capability type='mdev'><type id='a'/><uuid>zzz</uuid></capability></device>",
                "not a UUID"
            ),
        ])
    func refusesBadNodeDevices(xml: String, fragment: String) {
        #expect {
            try NodeDevice.parse(xml: xml)
        } throws: { error in
            (error as? NodeDeviceXMLError)?.message.contains(fragment) == true
        }
    }
}
