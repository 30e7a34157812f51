import Foundation
import Testing
import VGPUHost
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUMigrationCore

/// Fixture hosts, fixture VMs and the shipped policies, for the rule tests.
enum CheckFixtures {
    static let catalog: GPUBoardCatalog = {
        let url = TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)
        return try! GPUBoardCatalogFile.parse(try! TestData.text(url), file: url.path)
    }()

    /// A fixture host as its facts would be with libvirt reachable: libvirt 9.0.0 (≥ 8.6.0),
    /// QEMU 8.2.0 unless told otherwise, 256 GiB free, a distinct host UUID.
    static func host(_ name: String, qemu: String = "8.2.0", uuid: String? = nil) throws -> HostInventory {
        let root = TestData.fixtures.appendingPathComponent("hosts/\(name)").path
        var facts = try SysfsHostProbe(sysfs: DirectorySysfs(root: root), catalog: catalog).inventory()
        facts.libvirtVersion = "9.0.0"
        facts.hypervisorVersion = qemu
        facts.freeMemoryBytes = 256 << 30
        facts.hostUUID = uuid ?? UUID().uuidString.lowercased()
        return facts
    }

    static func domain(_ name: String) throws -> GuestDomain {
        try GuestDomain.parse(xml: try TestData.text(TestData.fixtures.appendingPathComponent("domains/\(name).xml")))
    }

    static func policy(_ name: String) throws -> CheckPolicy {
        let url = TestData.policies.appendingPathComponent("\(name).yaml")
        return try MigrationPolicyFile.parse(try TestData.text(url), name: name, file: url.path)
    }

    static func check(
        _ vm: String, from source: HostInventory, _ sourceName: String, to destination: HostInventory,
        _ destinationName: String, policy: String = "adaptive", state: CheckSubject.VMState = .running,
        cpu: CheckSubject.CPUComparison = .compatible
    ) throws -> CompatibilityReport {
        let subject = CheckSubject(
            vmName: vm, vmState: state, domain: state == .notFound ? nil : try domain(vm), sourceName: sourceName,
            source: source, destinationName: destinationName, destination: destination, cpuComparison: cpu)
        return CompatibilityRules.evaluate(subject, policy: try Self.policy(policy))
    }
}

extension CompatibilityReport {
    func finding(_ check: String) -> [CompatibilityFinding] { findings.filter { $0.check == check } }
    func severities(_ check: String) -> [CompatibilityFinding.Severity] { finding(check).map(\.severity) }
}

@Suite("Pre-flight compatibility rules on the fixture hosts")
struct CompatibilityRulesTests {
    typealias F = CheckFixtures

    @Test("T4 → T4 with the same driver passes; the Turing framebuffer stun is a warning with its size")
    func t4ToT4() throws {
        let report = try F.check("vm-t4", from: try F.host("t4-a"), "t4-a", to: try F.host("t4-b"), "t4-b")
        #expect(report.compatible, "\(report.findings.filter { $0.severity == .fail })")
        #expect(report.severities("vgpu.type-offered") == [.pass])
        #expect(report.severities("vgpu.capacity") == [.pass])
        #expect(report.severities("driver.version") == [.pass])
        #expect(report.severities("gpu.dirty-tracking") == [.warn])
        #expect(report.finding("gpu.dirty-tracking").first?.message.contains("4096 MiB") == true)
        let estimate = try #require(report.estimate)
        #expect(estimate.untrackedFramebufferMiB == 4096)
        #expect(estimate.memoryMiB == 16384)
    }

    @Test("a driver mismatch fails, naming both versions; policy 'branch' would accept the same branch only")
    func driverMismatch() throws {
        let report = try F.check("vm-t4", from: try F.host("t4-a"), "t4-a", to: try F.host("t4-c-older-driver"), "t4-c")
        #expect(!report.compatible)
        let finding = try #require(report.finding("driver.version").first)
        #expect(finding.severity == .fail)
        #expect(finding.message.contains("550.90.05") && finding.message.contains("535.183.04"))
    }

    @Test("A100 without dirty tracking: adaptive warns with the stun time, strict fails")
    func a100ByPolicy() throws {
        let source = try F.host("a100-40gb")
        let destination = try F.host("a100-40gb")
        let adaptive = try F.check("vm-a100", from: source, "a100-1", to: destination, "a100-2")
        #expect(adaptive.compatible)
        #expect(adaptive.severities("gpu.dirty-tracking") == [.warn])
        #expect(adaptive.finding("gpu.dirty-tracking").first?.message.contains("20480 MiB") == true)
        #expect(adaptive.finding("gpu.dirty-tracking").first?.message.contains("16.4 s") == true)
        let strict = try F.check("vm-a100", from: source, "a100-1", to: destination, "a100-2", policy: "strict")
        #expect(!strict.compatible)
        #expect(strict.severities("gpu.dirty-tracking") == [.fail])
        let downtime = try #require(strict.finding("downtime.estimate").first)
        #expect(downtime.severity == .fail)
        #expect(downtime.message.contains("exceeds the policy cap of 500 ms"))
    }

    @Test("L40S → H100 fails on type and board")
    func l40sToH100() throws {
        let report = try F.check("vm-l40s", from: try F.host("l40s"), "l40s", to: try F.host("h100-pcie"), "h100")
        #expect(!report.compatible)
        #expect(report.severities("vgpu.type-offered") == [.fail])
        #expect(report.severities("gpu.board") == [.fail])
        // L40S is Ada: it tracks dirty pages, so only the board and type stop this migration.
        #expect(report.severities("gpu.dirty-tracking") == [.pass])
    }

    @Test("a full destination fails on capacity, saying why")
    func fullDestination() throws {
        let report = try F.check("vm-t4", from: try F.host("t4-a"), "t4-a", to: try F.host("t4-full"), "t4-full")
        let finding = try #require(report.finding("vgpu.capacity").first)
        #expect(finding.severity == .fail)
        #expect(finding.message.contains("can create 0 more GRID T4-4Q but the VM needs 1"))
    }

    @Test("QEMU 7.2 fails the 8.1.0 minimum when the VM has a vGPU; a VM without vGPU passes")
    func oldQEMU() throws {
        let source = try F.host("t4-a", qemu: "7.2.0")
        let destination = try F.host("t4-b", qemu: "7.2.0")
        let withVGPU = try F.check("vm-t4", from: source, "t4-a", to: destination, "t4-b")
        #expect(withVGPU.severities("versions.qemu") == [.fail, .fail])
        #expect(withVGPU.finding("versions.qemu").first?.message.contains("QEMU 7.2.0 on t4-a is below 8.1.0") == true)
        let plain = try F.check("vm-plain", from: source, "t4-a", to: destination, "t4-b")
        #expect(plain.compatible, "\(plain.findings.filter { $0.severity != .pass })")
        #expect(plain.verdict == .pass)
    }

    @Test("vendor-VF vGPU: L40S → L40S passes; the VF is resolved as a vGPU")
    func l40sToL40s() throws {
        let report = try F.check("vm-l40s", from: try F.host("l40s"), "l40s-1", to: try F.host("l40s"), "l40s-2")
        #expect(report.compatible)
        #expect(report.severities("gpu.dirty-tracking") == [.pass])
        #expect(report.finding("vgpu.type-offered").first?.message.contains("NVIDIA L40S-8Q (1152)") == true)
    }

    @Test("NVIDIA's board exclusions are named: H100 ↔ H200, 80 GB PCIe ↔ 94 GB NVL")
    func hopperExclusions() throws {
        var source = try F.host("h100-pcie")
        var destination = try F.host("h100-pcie")
        destination.gpus[0].board = F.catalog.board(named: "H200-SXM")
        var report = try F.check("vm-h100", from: source, "h100", to: destination, "h200")
        #expect(report.finding("gpu.board").first?.message.contains("between H100, H200 and H800 boards") == true)
        destination.gpus[0].board = F.catalog.board(named: "H100-NVL")
        report = try F.check("vm-h100", from: source, "h100", to: destination, "h100-nvl")
        #expect(report.finding("gpu.board").first?.message.contains("80 GB PCIe and 94 GB NVL") == true)
        source.gpus[0].board = F.catalog.board(named: "H100-NVL")
        report = try F.check("vm-h100", from: source, "h100-nvl-1", to: destination, "h100-nvl-2")
        #expect(report.severities("gpu.board") == [.pass])
    }

    @Test("the VM must exist and run")
    func vmState() throws {
        let missing = try F.check(
            "vm-t4", from: try F.host("t4-a"), "t4-a", to: try F.host("t4-b"), "t4-b", state: .notFound)
        #expect(missing.severities("vm.exists") == [.fail])
        let stopped = try F.check(
            "vm-t4", from: try F.host("t4-a"), "t4-a", to: try F.host("t4-b"), "t4-b", state: .notRunning)
        #expect(stopped.severities("vm.exists") == [.fail])
    }

    @Test("the same host (by UUID) is refused")
    func sameHost() throws {
        let uuid = "5a5a0001-0000-4000-8000-000000000001"
        let report = try F.check(
            "vm-t4", from: try F.host("t4-a", uuid: uuid), "t4-a", to: try F.host("t4-b", uuid: uuid.uppercased()),
            "t4-b")
        #expect(report.severities("host.distinct") == [.fail])
    }

    @Test("not enough free memory and an incompatible CPU fail")
    func memoryAndCPU() throws {
        var destination = try F.host("t4-b")
        destination.freeMemoryBytes = 8 << 30
        let report = try F.check(
            "vm-t4", from: try F.host("t4-a"), "t4-a", to: destination, "t4-b", cpu: .incompatible("no avx512"))
        #expect(report.severities("memory.destination") == [.fail])
        #expect(
            report.finding("memory.destination").first?.message.contains("8192 MiB available; the VM needs 16384 MiB")
                == true)
        #expect(report.severities("cpu.compatible") == [.fail])
    }

    @Test("a policy with post-copy is refused for a vGPU VM")
    func postCopy() throws {
        var policy = try F.policy("adaptive")
        policy.postCopy = true
        let subject = CheckSubject(
            vmName: "vm-t4", vmState: .running, domain: try F.domain("vm-t4"), sourceName: "t4-a",
            source: try F.host("t4-a"), destinationName: "t4-b", destination: try F.host("t4-b"))
        let report = CompatibilityRules.evaluate(subject, policy: policy)
        #expect(report.severities("policy.post-copy") == [.fail])
    }
}

@Suite("Migration estimate")
struct MigrationEstimateTests {
    @Test("converging pre-copy: rounds shrink by dirty rate ÷ bandwidth until the rest fits the limit")
    func converging() {
        let estimate = MigrationEstimate(
            memoryMiB: 1000, framebufferMiB: 0, untrackedFramebufferMiB: 0, bandwidthMiBPerSecond: 100,
            dirtyRateMiBPerSecond: 50, downtimeLimitMilliseconds: 1000)
        // 1000 → 500 → 250 → 125 → 62.5 (≤ 100 MiB = 1 s of link): 4 rounds, 10+5+2.5+1.25 s.
        #expect(estimate.converges)
        #expect(estimate.rounds == 4)
        #expect(abs(estimate.totalSeconds - (18.75 + 0.625)) < 1e-9)
        #expect(abs(estimate.downtimeMilliseconds - 625) < 1e-9)
    }

    @Test("untracked framebuffer adds framebuffer ÷ bandwidth to the stun time")
    func untracked() {
        let estimate = MigrationEstimate(
            memoryMiB: 1000, framebufferMiB: 2048, untrackedFramebufferMiB: 2048, bandwidthMiBPerSecond: 1024,
            dirtyRateMiBPerSecond: 0, downtimeLimitMilliseconds: 500)
        #expect(estimate.downtimeMilliseconds == 2000)
    }

    @Test("a guest dirtying faster than the link does not converge; its stun is one round's dirt")
    func notConverging() {
        let estimate = MigrationEstimate(
            memoryMiB: 1024, framebufferMiB: 0, untrackedFramebufferMiB: 0, bandwidthMiBPerSecond: 100,
            dirtyRateMiBPerSecond: 400, downtimeLimitMilliseconds: 300)
        #expect(!estimate.converges)
        #expect(estimate.downtimeMilliseconds == 10_240)
    }
}
