import Testing

@testable import VGPUMigrationCore

@Suite("Guest vGPUs on a host")
struct GuestVGPUTests {
    static let vf = PCIAddress("0000:41:00.4")!
    static let nic = PCIAddress("0000:05:00.1")!

    static func host() -> HostInventory {
        let mdevType = VGPUTypeInfo(id: "nvidia-232", name: "GRID T4-4Q")
        let vfType = VGPUTypeInfo(id: "1152", name: "NVIDIA L40S-8Q")
        let t4 = PhysicalGPU(
            address: DeviceAddress("0000:3b:00.0")!, physicalFunctionVisible: true, pci: nil, board: nil,
            interface: .mdev,
            sriov: false, functions: [],
            vgpuTypes: [VGPUTypeCapacity(type: mdevType, free: 3, used: 1, maxInstances: 4, blockedBy: nil)],
            vgpus: [
                ExistingVGPU(
                    id: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", interface: .mdev, typeID: "nvidia-232",
                    typeName: "GRID T4-4Q", function: DeviceAddress("0000:3b:00.0")!)
            ])
        let l40s = PhysicalGPU(
            address: DeviceAddress("0000:41:00.0")!, physicalFunctionVisible: true, pci: nil, board: nil,
            interface: .vendorVFIO, sriov: true, functions: [],
            vgpuTypes: [VGPUTypeCapacity(type: vfType, free: 4, used: 1, maxInstances: 6, blockedBy: nil)],
            vgpus: [
                ExistingVGPU(
                    id: vf.description, interface: .vendorVFIO, typeID: "1152", typeName: nil, function: .pci(vf))
            ])
        return HostInventory(source: InventorySource(kind: .sysfs, location: "/"), gpus: [t4, l40s])
    }

    @Test("mdevs and vendor VFs are vGPUs; other passed-through PCI functions are not")
    func resolvesBothKinds() throws {
        let xml = """
            <domain type='kvm'><name>vm</name><memory unit='GiB'>16</memory><vcpu>4</vcpu><devices>
              <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
                <source><address uuid='5B1F0A7C-3E2D-4C1B-8A9F-6E5D4C3B2A10'/></source></hostdev>
              <hostdev mode='subsystem' type='pci' managed='yes'>
                <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x4'/></source></hostdev>
              <hostdev mode='subsystem' type='pci' managed='yes'>
                <source><address domain='0x0000' bus='0x05' slot='0x00' function='0x1'/></source></hostdev>
              <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
                <source><address uuid='00000000-0000-4000-8000-00000000abcd'/></source></hostdev>
            </devices></domain>
            """
        let domain = try GuestDomain.parse(xml: xml)
        #expect(domain.memoryBytes == 16 << 30)
        let vgpus = domain.vgpus(on: Self.host())
        #expect(
            vgpus.map(\.source) == [
                .mdev(uuid: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10"), .pci(Self.vf),
                .mdev(uuid: "00000000-0000-4000-8000-00000000abcd"),
            ])
        #expect(vgpus[0].type?.name == "GRID T4-4Q")
        #expect(vgpus[1].type?.name == "NVIDIA L40S-8Q")
        #expect(vgpus[1].gpuAddress == DeviceAddress("0000:41:00.0"))
        #expect(vgpus[2].hostVGPU == nil)
    }
}
