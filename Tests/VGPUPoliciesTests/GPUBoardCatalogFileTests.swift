import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUPolicies

@Suite("GPU board table")
struct GPUBoardCatalogFileTests {
    static func shipped() throws -> GPUBoardCatalog {
        let url = TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)
        return try GPUBoardCatalogFile.parse(try TestData.text(url), file: url.path)
    }

    @Test("the shipped table covers the boards operators run")
    func coversBoards() throws {
        let catalog = try Self.shipped()
        for name in [
            "T4", "A2", "A10", "A16", "A40", "A100-40GB", "A100-80GB-PCIe", "L4", "L40", "L40S", "H100-PCIe",
            "H100-SXM5", "H100-NVL", "H200-SXM",
        ] {
            #expect(catalog.board(named: name) != nil, "\(name)")
        }
        #expect(Set(catalog.boards.map(\.vgpuTypePrefix)).count == catalog.boards.count)
        #expect(catalog.board(named: "A100-40GB")?.architecture.dirtyPageTracking == false)
        #expect(catalog.board(named: "H100-NVL")?.architecture.dirtyPageTracking == true)
    }

    @Test("PCI ids identify boards; shared ids are told apart by subsystem or type names")
    func identifiesBoards() throws {
        let catalog = try Self.shipped()
        #expect(catalog.identify(pci: PCIIdentity(vendor: 0x10de, device: 0x1eb8), vgpuTypeNames: [])?.name == "T4")
        #expect(
            catalog.identify(pci: PCIIdentity(vendor: 0x10de, device: 0x2321), vgpuTypeNames: [])?.name == "H100-NVL")
        let a2Subsystem = PCIIdentity(vendor: 0x10de, device: 0x25b6, subsystemVendor: 0x10de, subsystemDevice: 0x157e)
        #expect(catalog.identify(pci: a2Subsystem, vgpuTypeNames: [])?.name == "A2")
        let vf = PCIIdentity(vendor: 0x10de, device: 0x25b6, subsystemVendor: 0x10de, subsystemDevice: 0)
        #expect(catalog.identify(pci: vf, vgpuTypeNames: [])?.name == nil)
        #expect(catalog.identify(pci: vf, vgpuTypeNames: ["NVIDIA A16-2Q"])?.name == "A16")
        #expect(catalog.identify(pci: nil, vgpuTypeNames: ["NVIDIA L40S-1Q", "NVIDIA L40S-48A"])?.name == "L40S")
        #expect(catalog.identify(pci: PCIIdentity(vendor: 0x8086, device: 0x10ca), vgpuTypeNames: []) == nil)
    }

    @Test("vGPUs per GPU from the table match every time-sliced row of NVIDIA's type table")
    func maxInstancesMatchNVIDIA() throws {
        let catalog = try Self.shipped()
        let csv = try TestData.text(TestData.realdata.appendingPathComponent("nvidia/vgpu-types-max-per-gpu.csv"))
        var checked = 0
        for line in csv.split(whereSeparator: \.isNewline).dropFirst() {
            let columns = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            let (prefix, typeName, migSlices, count) = (columns[0], columns[3], columns[5], Int(columns[9]))
            guard migSlices.isEmpty, let board = catalog.boards.first(where: { $0.vgpuTypePrefix == prefix }) else {
                continue
            }
            let profile = try #require(VGPUProfile(typeName: "NVIDIA " + typeName))
            #expect(board.maxInstances(of: profile) == count, "\(typeName)")
            checked += 1
        }
        #expect(checked == 94)  // time-sliced rows of the boards in the table (T4 .. H100-NVL)
    }

    @Test(
        "a broken table is refused with file, line and what to fix",
        arguments: [
            (
                "architectures: {Turing: {dirty_page_tracking: false}}\nboards:\n  - name: T4\n    colour: green\n", 4,
                "unknown key 'colour'"
            ),
            ("architectures: {Turing: {dirty_page_tracking: maybe}}\nboards: []\n", 1, "must be true or false"),
            (
                "architectures: {Turing: {dirty_page_tracking: false}}\nboards:\n  - name: X\n    marketing_name: X\n    architecture: Volta\n    vgpu_type_prefix: X\n    framebuffer_gb: 16\n    pci_ids: [10de:1eb8]\n",
                5, "architecture 'Volta'"
            ),
            (
                "architectures: {Turing: {dirty_page_tracking: false}}\nboards:\n  - name: X\n    marketing_name: X\n    architecture: Turing\n    vgpu_type_prefix: X\n    framebuffer_gb: 16\n    pci_ids: [\"nvidia\"]\n",
                8, "'nvidia' is not a PCI id"
            ),
            ("architectures: {Turing: {dirty_page_tracking: false}\nboards: []\n", 2, "YAML"),
            ("boards: []\n", 1, "has no 'architectures'"),
        ])
    func refusesBrokenTable(yaml: String, line: Int, fragment: String) {
        #expect {
            _ = try GPUBoardCatalogFile.parse(yaml, file: "gpu-boards.yaml")
        } throws: { error in
            guard let error = error as? PolicyFileError else { return false }
            return error.file == "gpu-boards.yaml" && error.line == line && error.message.contains(fragment)
                && error.description.hasPrefix("gpu-boards.yaml:\(line):")
        }
    }
}
