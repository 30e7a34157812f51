import Foundation
import Testing
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUMigrationCore

@Suite("Distribution kernels that carry VFIO live migration")
struct KernelBackportTests {
    typealias F = CheckFixtures

    static func shippedBackports() throws -> [KernelBackport] {
        let url = TestData.policies.appendingPathComponent(KernelBackportsFile.fileName)
        return try KernelBackportsFile.parse(try TestData.text(url), file: url.path)
    }

    static let rhel = KernelBackport(
        name: "Red Hat Enterprise Linux 9.4 and later", upstream: VersionNumber([5, 14, 0]), tag: "el9",
        minimumBuild: 427)

    @Test(
        "RHEL 9.4 and later kernels match; older RHEL 9, other distributions and other lines do not",
        arguments: [
            ("5.14.0-427.13.1.el9_4.x86_64", true),  // RHEL 9.4 GA
            ("5.14.0-503.11.1.el9_5.x86_64", true),  // RHEL 9.5
            ("5.14.0-570.12.1.el9_6.x86_64", true),  // RHEL 9.6
            ("5.14.0-611.el9.x86_64", true),  // a CentOS Stream 9 build
            ("5.14.0-362.8.1.el9_3.x86_64", false),  // RHEL 9.3: no backport
            ("5.14.0-427.13.1.el8.x86_64", false),  // not el9
            ("4.18.0-553.el8_10.x86_64", false),  // RHEL 8
            ("5.14.21-150500.55.39-default", false),  // SLES 15 SP5
            ("5.15.0-91-generic", false),  // Ubuntu 22.04
            ("5.14.0", false),
            ("5.14.0-el9", false),
        ])
    func matching(release: String, expected: Bool) {
        #expect(Self.rhel.matches(release) == expected)
    }

    @Test("the shipped table holds RHEL 9.4's line")
    func shippedTable() throws {
        let table = try Self.shippedBackports()
        #expect(table.contains { $0.matches("5.14.0-427.13.1.el9_4.x86_64") })
        #expect(table.first?.oldestRelease == "5.14.0-427.el9")
    }

    func report(sourceKernel: String, backports: [KernelBackport]) throws -> CompatibilityReport {
        var source = try F.host("t4-a")
        source.kernelRelease = sourceKernel
        var policy = try F.policy("adaptive")
        policy.kernelBackports = backports
        let subject = CheckSubject(
            vmName: "vm-t4", vmState: .running, domain: try F.domain("vm-t4"), sourceName: "rhel-a",
            source: source, destinationName: "t4-b", destination: try F.host("t4-b"), cpuComparison: .compatible)
        return CompatibilityRules.evaluate(subject, policy: policy)
    }

    @Test("versions.kernel passes a RHEL 9.4 kernel below 5.18 and says why")
    func backportPasses() throws {
        let report = try report(sourceKernel: "5.14.0-427.13.1.el9_4.x86_64", backports: try Self.shippedBackports())
        let finding = try #require(report.finding("versions.kernel").first)
        #expect(finding.severity == .pass)
        #expect(finding.message.contains("below 5.18.0") && finding.message.contains("Red Hat Enterprise Linux 9.4"))
        #expect(finding.message.contains("5.14.0-427.el9 or later"))
    }

    @Test("an unknown old kernel still fails, and the hint says where a backport would go")
    func unknownOldKernelFails() throws {
        for kernel in ["5.15.0-91-generic", "5.14.0-362.8.1.el9_3.x86_64"] {
            let report = try report(sourceKernel: kernel, backports: try Self.shippedBackports())
            let finding = try #require(report.finding("versions.kernel").first)
            #expect(finding.severity == .fail, "\(kernel)")
            #expect(finding.message.contains(kernel))
            #expect(finding.remedy?.contains("kernel-backports.yaml") == true)
        }
        // Without the table, RHEL 9.4 fails by its version string, as before.
        let bare = try report(sourceKernel: "5.14.0-427.13.1.el9_4.x86_64", backports: [])
        #expect(bare.severities("versions.kernel").first == .fail)
    }
}
