import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@Suite("check against the real libvirt daemons of the lab", .serialized, .twoHostLab, .tags(.lab))
struct CheckAgainstLabTests {
    func inventory(_ lab: Lab, in directory: URL) throws -> String {
        try labInventory(lab, in: directory)
    }

    /// Defines a guest on the lab's source (with an mdev when given), expecting virsh to succeed.
    func defineVM(_ lab: Lab, name: String, mdev: String?, start: Bool, in directory: URL) throws {
        for outcome in try lab.defineGuest(name, memoryMiB: 64, mdev: mdev, start: start) {
            #expect(outcome.status == 0, "\(outcome.standardError)")
        }
    }

    @Test("a running VM without vGPU passes between the two daemons")
    func plainVMPasses() throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try defineVM(lab, name: "lab-plain", mdev: nil, start: true, in: directory)
        let outcome = try check([
            "lab-plain", "--from", "src", "--to", "dst", "--inventory", try inventory(lab, in: directory),
        ])
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("PASS  vm.exists           VM lab-plain is running on src"))
        #expect(
            outcome.standardOutput.contains(
                "PASS  host.distinct       source and destination are different hosts (host UUIDs differ)"))
        #expect(outcome.standardOutput.contains("PASS  memory.destination"))
        // The running guest's CPU, compared by the destination daemon.
        #expect(outcome.standardOutput.contains("PASS  cpu.compatible      libvirt finds the VM's CPU runnable on dst"))
        #expect(outcome.standardOutput.contains("Verdict: compatible"))
    }

    @Test("a VM with a vGPU fails on QEMU 7.2 being below 8.1.0, on both hosts")
    func vgpuVMFailsOnQEMU() throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try defineVM(lab, name: "lab-vgpu", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", start: false, in: directory)
        let outcome = try check([
            "lab-vgpu", "--from", "src", "--to", "dst", "--inventory", try inventory(lab, in: directory), "--json",
        ])
        #expect(outcome.status == 1)
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as? [String: Any])
        let findings = try #require(report["findings"] as? [[String: Any]])
        let qemu = findings.filter { $0["check"] as? String == "versions.qemu" }
        #expect(qemu.count == 2)
        #expect(qemu.allSatisfy { $0["severity"] as? String == "fail" })
        #expect(qemu.allSatisfy { ($0["message"] as? String)?.contains(" is below 8.1.0") == true })
        #expect(qemu.allSatisfy { ($0["message"] as? String)?.hasPrefix("QEMU 7.2.") == true })
        let libvirt = findings.filter { $0["check"] as? String == "versions.libvirt" }
        #expect(libvirt.map { $0["severity"] as? String } == ["pass", "pass"])
        // It is defined but not running: live migration needs it running.
        #expect(findings.contains { $0["check"] as? String == "vm.exists" && $0["severity"] as? String == "fail" })
    }

    @Test("inspect --sysfs-root with --connect gives one snapshot: GPUs from sysfs, facts from libvirt")
    func mergedSnapshot() throws {
        let lab = try #require(Lab.current)
        let outcome = try inspect(["--sysfs-root", fixture("t4-a"), "--connect", lab.sourceURI, "--json"])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let facts = try JSONDecoder().decode(HostInventory.self, from: Data(outcome.standardOutput.utf8))
        #expect(facts.gpus.first?.board?.name == "T4")
        #expect(facts.nvidiaDriverVersion == "550.90.05")
        #expect(facts.hostUUID == "7a3c0001-5e1d-4b2a-9c8f-00000000a001")
        #expect(facts.libvirtVersion == "9.0.0")
        #expect(facts.hypervisorVersion?.hasPrefix("7.2.") == true)
        #expect((facts.freeMemoryBytes ?? 0) > 0)
        #expect(facts.cpuArchitecture == "x86_64")
    }

    @Test("an unknown VM is reported as not defined on the source")
    func unknownVM() throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try check([
            "no-such-vm", "--from", "src", "--to", "dst", "--inventory", try inventory(lab, in: directory),
        ])
        #expect(outcome.status == 1)
        let line = try #require(outcome.standardOutput.split(separator: "\n").first { $0.contains("vm.exists") })
        #expect(line.hasPrefix("  FAIL  vm.exists"))
        #expect(line.hasSuffix("VM no-such-vm is not defined on src"))
    }
}
