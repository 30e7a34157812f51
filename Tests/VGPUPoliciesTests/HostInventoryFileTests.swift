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

    static let fleet = """
        # a fleet
        defaults:
          bandwidth_mib_per_s: 1250
        hosts:
          a:
            libvirt_uri: qemu+tcp://a/system
            bandwidth_mib_per_s: { b: 2500 }
          b:
            # the second host
            libvirt_uri: qemu+tcp://b/system
            sysfs_root: /b
          c:
            libvirt_uri: qemu+tcp://c/system
            max_inbound_migrations: 99
          d: { libvirt_uri: "qemu+tcp://d/system" }
        """

    @Test("reading only some hosts gives them as the whole file does, with the file's line numbers")
    func onlySomeHosts() throws {
        let whole = try HostInventoryFile.parse(
            Self.fleet.replacingOccurrences(of: ": 99", with: ": 3"), file: "h.yaml")
        let some = try HostInventoryFile.parse(Self.fleet, file: "h.yaml", hosts: ["a", "b", "d"])
        #expect(some.hosts == whole.hosts.filter { ["a", "b", "d"].contains($0.name) })
        #expect(some.host(named: "d")?.libvirtURI == "qemu+tcp://d/system")
        #expect(some.bandwidth(from: "a", to: "b") == 2500 && some.defaultBandwidthMiBPerSecond == 1250)
        // c's bad limit is not read when only a and b are asked for; asked for, it names its line.
        #expect(throws: PolicyFileError.self) { try HostInventoryFile.parse(Self.fleet, file: "h.yaml") }
        #expect {
            try HostInventoryFile.parse(Self.fleet, file: "h.yaml", hosts: ["c"])
        } throws: { error in "\(error)".contains("h.yaml:14") }
        let reduced = try #require(HostInventoryFile.reduced(Self.fleet, keeping: ["b"]))
        #expect(
            reduced.split(separator: "\n", omittingEmptySubsequences: false).count
                == Self.fleet.split(separator: "\n", omittingEmptySubsequences: false).count)
        #expect(!reduced.contains("qemu+tcp://a") && reduced.contains("qemu+tcp://b") && !reduced.contains("://c"))
    }

    @Test(
        "an inventory not cut by lines safely is read whole",
        arguments: [
            "hosts:\n  a: &x\n    libvirt_uri: test:///default\n  b: *x\n",
            "hosts: { a: { libvirt_uri: test:///default } }\n",
            "hosts:\n  \"a\":\n    libvirt_uri: test:///default\n",
            "hosts:\n  b:\n    libvirt_uri: test:///default\n",
        ])
    func readWhole(_ text: String) {
        #expect(HostInventoryFile.reduced(text, keeping: ["a"]) == nil)
    }
}
