import Foundation
import Testing
import VGPUTestSupport

@testable import VGPUMigrationCore

@Suite("Pre-flight rules for mediated devices that are not NVIDIA GPUs")
struct GenericMdevRulesTests {
    typealias F = CheckFixtures

    /// The nested lab's versions: libvirt 11.3, QEMU 10.0, Debian's 6.12 kernel (the fixtures').
    static func mttyHost(_ name: String) throws -> HostInventory {
        var facts = try F.host(name, qemu: "10.0.13")
        facts.libvirtVersion = "11.3.0"
        return facts
    }

    @Test("mtty → mtty passes: same type offered, capacity from the kernel, NVIDIA rules say they do not apply")
    func mttyToMtty() throws {
        let report = try F.check(
            "vm-mtty", from: try Self.mttyHost("mtty"), "src", to: try Self.mttyHost("mtty-empty"), "dst")
        #expect(report.compatible, "\(report.findings.filter { $0.severity == .fail })")
        #expect(report.verdict == .pass, "\(report.findings.filter { $0.severity == .warn })")
        #expect(report.severities("vgpu.type-offered") == [.pass])
        #expect(report.finding("vgpu.type-offered").first?.message.contains("mdev parent mtty") == true)
        let capacity = try #require(report.finding("vgpu.capacity").first)
        #expect(capacity.severity == .pass && capacity.message.contains("12 more Dual port serial"))
        for check in ["gpu.board", "driver.version", "gpu.dirty-tracking"] {
            let finding = try #require(report.finding(check).only, "\(check)")
            #expect(finding.severity == .notApplicable, "\(check)")
            #expect(finding.message.contains("NVIDIA") && finding.message.contains("not apply"), "\(finding.message)")
        }
        #expect(report.severities("versions.libvirt") == [.pass, .pass])
        #expect(report.severities("versions.qemu") == [.pass, .pass])
        #expect(report.severities("versions.kernel") == [.pass, .pass])
        // No framebuffer: nothing moves while paused.
        #expect(report.estimate?.framebufferMiB == 0)
    }

    @Test("a destination whose mtty lacks the type, or has no room, fails with what to do")
    func typeMissingOrFull() throws {
        let missing = try F.check(
            "vm-mtty", from: try Self.mttyHost("mtty"), "src", to: try Self.mttyHost("mtty-single-only"), "dst")
        let offered = try #require(missing.finding("vgpu.type-offered").only)
        #expect(offered.severity == .fail && offered.message.contains("no mdev type mtty-2"))
        #expect(offered.remedy?.contains("load the same driver") == true)

        var full = try Self.mttyHost("mtty-empty")
        for index in full.gpus[0].vgpuTypes.indices {
            full.gpus[0].vgpuTypes[index].free = 0
            full.gpus[0].vgpuTypes[index].blockedBy = "none available: the driver reports no available instances"
        }
        let report = try F.check("vm-mtty", from: try Self.mttyHost("mtty"), "src", to: full, "dst")
        let capacity = try #require(report.finding("vgpu.capacity").only)
        #expect(capacity.severity == .fail && capacity.message.contains("mdev parent mtty: none available"))
    }

    @Test("an NVIDIA GPU never offers an mtty guest a home, and an mtty host none to an NVIDIA guest")
    func kindsDoNotMix() throws {
        let toT4 = try F.check("vm-mtty", from: try Self.mttyHost("mtty"), "src", to: try F.host("t4-b"), "dst")
        #expect(toT4.severities("vgpu.type-offered") == [.fail])
        let fromT4 = try F.check("vm-t4", from: try F.host("t4-a"), "src", to: try Self.mttyHost("mtty-empty"), "dst")
        #expect(fromT4.severities("vgpu.type-offered") == [.fail])
        // The NVIDIA guest keeps NVIDIA's rules.
        #expect(!fromT4.finding("driver.version").contains { $0.severity == .notApplicable })
    }
}

extension Collection {
    /// The one element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
