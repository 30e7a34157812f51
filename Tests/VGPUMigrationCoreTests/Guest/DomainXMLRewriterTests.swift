import Foundation
import Testing
import VGPUTestSupport

@testable import VGPUMigrationCore

@Suite("Destination domain XML rewriter")
struct DomainXMLRewriterTests {
    static let newA = "11111111-2222-4333-8444-555555555555"
    static let newB = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

    func realDomain(_ path: String) throws -> String {
        try TestData.text(TestData.realdata.appendingPathComponent(path))
    }

    @Test("one mdev: only its UUID changes, byte for byte")
    func rewritesOneMdev() throws {
        let original = try realDomain("libvirt/tests/qemuxmlconfdata/hostdev-mdev-precreated.x86_64-latest.xml")
        let old = "53764d0e-85a0-42b4-af5c-2046b460b1dc"
        let rewritten = try DomainXMLRewriter.rewrite(
            original, mapping: [.mdev(uuid: old): .mdev(uuid: Self.newA)])
        #expect(rewritten == original.replacingOccurrences(of: old, with: Self.newA))
        #expect(rewritten != original)
        #expect(try GuestDomain.parse(xml: rewritten).mdevHostdevs.map(\.source) == [.mdev(uuid: Self.newA)])
    }

    @Test("two mdevs: both UUIDs change, comments and metadata stay")
    func rewritesTwoMdevs() throws {
        let original = try realDomain("libvirt/ceems-qemu/instance-00000001.xml")
        let oldA = "c73f1fa6-489e-4834-9476-d70dabd98c40"
        let oldB = "3b356d38-854e-48be-b376-00c72c7d119c"
        let rewritten = try DomainXMLRewriter.rewrite(
            original, mapping: [.mdev(uuid: oldA): .mdev(uuid: Self.newA), .mdev(uuid: oldB): .mdev(uuid: Self.newB)])
        let expected = original.replacingOccurrences(of: oldA, with: Self.newA)
            .replacingOccurrences(of: oldB, with: Self.newB)
        #expect(rewritten == expected)
        #expect(rewritten.hasPrefix("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE."))
        let domain = try GuestDomain.parse(xml: rewritten)
        #expect(domain.mdevHostdevs.map(\.source) == [.mdev(uuid: Self.newA), .mdev(uuid: Self.newB)])
    }

    @Test("a VF passed through is pointed at the reserved VF, keeping the attribute spelling")
    func rewritesVendorVF() throws {
        let original = try realDomain("libvirt/ceems-qemu/instance-00000003.xml")
        let source = HostdevSource.pci(PCIAddress("0000:89:00.0")!)
        let target = HostdevSource.pci(PCIAddress("0000:8a:01.4")!)
        let mdevs = try GuestDomain.parse(xml: original).mdevHostdevs.map(\.source)
        var mapping: [HostdevSource: HostdevSource] = [source: target]
        mapping[mdevs[0]] = .mdev(uuid: Self.newA)
        mapping[mdevs[1]] = .mdev(uuid: Self.newB)
        let rewritten = try DomainXMLRewriter.rewrite(
            original, mapping: mapping, vgpuSources: Set(mdevs + [source]))
        var expected = original.replacingOccurrences(
            of: "bus='0x89' slot='0x00' function='0x0'", with: "bus='0x8a' slot='0x01' function='0x4'")
        expected = expected.replacingOccurrences(of: "64c3c4ae-44e1-45b8-8d46-5f76a1fa9824", with: Self.newA)
            .replacingOccurrences(of: "f9702ffa-fa28-414e-a52f-e7831fd5ce41", with: Self.newB)
        #expect(rewritten == expected)
    }

    @Test("refuses when a vGPU has no reserved device")
    func refusesUnmapped() throws {
        let original = try realDomain("libvirt/ceems-qemu/instance-00000001.xml")
        #expect(throws: DomainRewriteError.unmappedDevice(.mdev(uuid: "3b356d38-854e-48be-b376-00c72c7d119c"))) {
            try DomainXMLRewriter.rewrite(
                original, mapping: [.mdev(uuid: "c73f1fa6-489e-4834-9476-d70dabd98c40"): .mdev(uuid: Self.newA)])
        }
    }

    @Test("refuses stale, duplicate and cross-kind mappings")
    func refusesBadMappings() throws {
        let original = try realDomain("libvirt/ceems-qemu/instance-00000001.xml")
        let a = HostdevSource.mdev(uuid: "c73f1fa6-489e-4834-9476-d70dabd98c40")
        let b = HostdevSource.mdev(uuid: "3b356d38-854e-48be-b376-00c72c7d119c")
        let stranger = HostdevSource.mdev(uuid: "00000000-0000-4000-8000-000000000000")
        #expect(throws: DomainRewriteError.mappingForUnknownDevice(stranger)) {
            try DomainXMLRewriter.rewrite(
                original,
                mapping: [a: .mdev(uuid: Self.newA), b: .mdev(uuid: Self.newB), stranger: .mdev(uuid: Self.newA)])
        }
        #expect(throws: DomainRewriteError.self) {
            try DomainXMLRewriter.rewrite(original, mapping: [a: .mdev(uuid: Self.newA), b: .mdev(uuid: Self.newA)])
        }
        #expect(throws: DomainRewriteError.kindMismatch(a, .pci(PCIAddress("0000:3b:00.4")!))) {
            try DomainXMLRewriter.rewrite(
                original, mapping: [a: .pci(PCIAddress("0000:3b:00.4")!), b: .mdev(uuid: Self.newB)])
        }
        let duplicate = DomainRewriteError.duplicateTarget(.mdev(uuid: Self.newA), b, a)
        #expect(duplicate.description.contains("each vGPU needs its own device"))
    }
}
