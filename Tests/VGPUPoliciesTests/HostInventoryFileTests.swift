import Testing
import VGPUMigrationCore

@testable import VGPUPolicies

@Suite("Inventory file: the drain's per-host limits")
struct HostInventoryFileTests {
    @Test("limits per host and in the defaults; hosts that say nothing get the defaults, else KubeVirt's")
    func limits() throws {
        let inventory = try HostInventoryFile.parse(
            """
            defaults:
              max_outbound_migrations: 3
            hosts:
              a:
                libvirt_uri: qemu+tcp://a/system
                max_outbound_migrations: 1
                max_inbound_migrations: 4
              b:
                libvirt_uri: qemu+tcp://b/system
            """, file: "hosts.yaml")
        let limits = inventory.drainLimits(parallel: 6)
        #expect(limits.parallel == 6)
        #expect(limits.outbound("a") == 1 && limits.inbound("a") == 4)
        #expect(limits.outbound("b") == 3 && limits.inbound("b") == DrainLimits.defaultInboundPerHost)
        let plain = try HostInventoryFile.parse("hosts:\n  a:\n    libvirt_uri: test:///default\n", file: "h.yaml")
        #expect(plain.drainLimits(parallel: 5).outbound("a") == 2 && plain.drainLimits(parallel: 5).inbound("a") == 2)
    }

    @Test("a limit out of 1...64 or not a number is an error naming the line", arguments: ["0", "65", "two"])
    func badLimit(_ value: String) {
        #expect {
            try HostInventoryFile.parse(
                "hosts:\n  a:\n    libvirt_uri: test:///default\n    max_inbound_migrations: \(value)\n", file: "h.yaml"
            )
        } throws: { error in
            let text = "\(error)"
            return text.contains("h.yaml:4") && text.contains("max_inbound_migrations")
        }
    }
}
