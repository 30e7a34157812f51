import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUMigrationCLI

func check(_ arguments: [String]) throws -> ProcessOutcome {
    try ProductRunner.run("vgpu-migrate", ["check"] + arguments + ["--policies", TestData.policies.path])
}

let fixtureInventory = TestData.fixtures.appendingPathComponent("inventory/fixture-hosts.yaml").path

func domainXML(_ name: String) -> String {
    TestData.fixtures.appendingPathComponent("domains/\(name).xml").path
}

/// Writes `inspect --json` of fixture host `name` into `directory`, as an operator would.
func snapshot(_ name: String, into directory: URL) throws -> String {
    let outcome = try inspect(["--sysfs-root", fixture(name), "--json"])
    #expect(outcome.status == 0)
    let file = directory.appendingPathComponent("\(name).json")
    try outcome.standardOutput.write(to: file, atomically: true, encoding: .utf8)
    return file.path
}

func temporaryDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-check-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

@Suite("vgpu-migrate check")
struct CheckCommandTests {
    @Test("snapshots from inspect --json: T4 → T4 passes (exit 0), driver mismatch fails (exit 1)")
    func snapshots() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let a = try snapshot("t4-a", into: directory)
        let b = try snapshot("t4-b", into: directory)
        let c = try snapshot("t4-c-older-driver", into: directory)
        let good = try check(["vm-t4", "--source-facts", a, "--dest-facts", b, "--domain-xml", domainXML("vm-t4")])
        #expect(good.status == 0, "\(good.standardOutput)\(good.standardError)")
        #expect(good.standardOutput.contains("Check of VM vm-t4: t4-a → t4-b (policy adaptive)"))
        #expect(good.standardOutput.contains("Verdict: compatible with"))
        let bad = try check(["vm-t4", "--source-facts", a, "--dest-facts", c, "--domain-xml", domainXML("vm-t4")])
        #expect(bad.status == 1)
        #expect(bad.standardOutput.contains("FAIL  driver.version"))
        #expect(bad.standardOutput.contains("Verdict: incompatible (1 check fail)"))
    }

    @Test("--json prints the documented report, which decodes as CompatibilityReport")
    func jsonReport() throws {
        let outcome = try check([
            "vm-a100", "--from", "a100", "--to", "a100", "--inventory", fixtureInventory, "--domain-xml",
            domainXML("vm-a100"), "--policy", "strict", "--json",
        ])
        #expect(outcome.status == 1)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as? [String: Any])
        #expect(object["schema_version"] as? Int == 1)
        #expect(object["verdict"] as? String == "fail")
        #expect(object["compatible"] as? Bool == false)
        #expect(object["policy"] as? String == "strict")
        let findings = try #require(object["findings"] as? [[String: Any]])
        #expect(findings.allSatisfy { $0["check"] is String && $0["severity"] is String && $0["message"] is String })
        #expect(findings.contains { $0["check"] as? String == "host.distinct" && $0["severity"] as? String == "fail" })
        let estimate = try #require(object["estimate"] as? [String: Any])
        for key in [
            "downtime_ms", "total_s", "memory_mib", "framebuffer_mib", "untracked_framebuffer_mib",
            "bandwidth_mib_per_s",
        ] {
            #expect(estimate[key] != nil, "estimate.\(key)")
        }
        let report = try JSONDecoder().decode(CompatibilityReport.self, from: Data(outcome.standardOutput.utf8))
        #expect(report.findings.count == findings.count)
    }

    @Test("--to auto ranks the inventory: the compatible host first, the others with their reasons")
    func auto() throws {
        let outcome = try check([
            "vm-t4", "--from", "t4-a", "--to", "auto", "--inventory", fixtureInventory, "--domain-xml",
            domainXML("vm-t4"),
            "--json",
        ])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let ranking = try JSONDecoder().decode(DestinationRanking.self, from: Data(outcome.standardOutput.utf8))
        #expect(ranking.best?.host == "t4-b")
        #expect(ranking.candidates.map(\.host).first == "t4-b")
        #expect(!ranking.candidates.contains { $0.host == "t4-a" })
        let byHost = Dictionary(uniqueKeysWithValues: ranking.candidates.map { ($0.host, $0) })
        #expect(byHost["t4-c"]?.reasons.first?.hasPrefix("driver.version") == true)
        #expect(byHost["t4-full"]?.reasons.first?.hasPrefix("vgpu.capacity") == true)
        #expect(byHost["l40s"]?.compatible == false)
        #expect(byHost["down"]?.unreachable?.contains("cannot reach host down's agent at http://127.0.0.1:1") == true)
        // The link to t4-b is 2500 MiB/s (inventory): the framebuffer stun halves.
        let stun = try #require(byHost["t4-b"]?.report?.estimate?.downtimeMilliseconds)
        #expect(stun < 2000)
    }

    @Test("auto prefers, at equal downtime, the host whose GPU already carries the VM's type")
    func packing() throws {
        let source = try CheckFixtureData.host("t4-a")
        let empty = try CheckFixtureData.host("t4-b")
        let domain = try GuestDomain.parse(xml: try TestData.text(URL(fileURLWithPath: domainXML("vm-t4"))))
        #expect(DestinationRanking.packing(of: domain, from: source, on: source) == 1)
        #expect(DestinationRanking.packing(of: domain, from: source, on: empty) == 0)
    }

    @Test(
        "bad input ends with a clear error and exit code 2",
        arguments: [
            (
                ["vm-t4", "--from", "nowhere", "--to", "t4-b", "--inventory", fixtureInventory],
                "host 'nowhere' is not in the inventory"
            ),
            (
                ["vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory", "/nonexistent/hosts.yaml"],
                "cannot read the inventory"
            ),
            (["vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory", fixtureInventory], "give --domain-xml FILE"),
            (
                [
                    "vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory", fixtureInventory, "--domain-xml",
                    domainXML("vm-a100"),
                ], "describes VM 'vm-a100', not 'vm-t4'"
            ),
            (
                [
                    "vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory", fixtureInventory, "--domain-xml",
                    domainXML("vm-t4"), "--policy", "fastest",
                ], "no policy 'fastest'"
            ),
            (
                ["vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory", fixtureInventory, "--policy", "../etc/x"],
                "policy name"
            ),
            (["vm-t4", "--to", "t4-b"], "give --from HOST or --source-facts FILE"),
            (
                [
                    "vm-t4", "--source-facts", "/etc/hostname", "--dest-facts", "/etc/hostname", "--domain-xml",
                    domainXML("vm-t4"),
                ], "is not a host snapshot"
            ),
        ])
    func badInput(arguments: [String], fragment: String) throws {
        let outcome = try check(arguments)
        #expect(outcome.status == 2, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(outcome.standardError.contains(fragment), "\(outcome.standardError)")
    }

    @Test("a domain XML nested too deep or not UTF-8 is refused with the file, the place and the cause (exit 2)")
    func hostileDomainXML() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let a = try snapshot("t4-a", into: directory)
        let deep = directory.appendingPathComponent("deep.xml")
        // 5,000 levels crashed the reader (it recursed per level); libxml2 stops at 256.
        try Data(
            ("<domain type='kvm'><name>vm-t4</name>\n<devices>\n" + String(repeating: "<a>\n", count: 5_000)
                + String(repeating: "</a>", count: 5_000) + "</devices></domain>\n").utf8
        ).write(to: deep)
        let latin1 = directory.appendingPathComponent("latin1.xml")
        try Data(Array("<domain type='kvm'>\n  <name>caf".utf8) + [0xE9] + Array("</name>\n</domain>\n".utf8))
            .write(to: latin1)
        for (file, expected) in [
            (deep, "deep.xml: domain XML, line 257, column 1: elements nest more than 256 levels deep"),
            (latin1, "latin1.xml: not UTF-8: byte 32 (line 2, column 12) is 0xE9, 'é' in Latin-1"),
        ] {
            let outcome = try check(["vm-t4", "--source-facts", a, "--dest-facts", a, "--domain-xml", file.path])
            #expect(outcome.status == 2, "\(outcome.standardOutput)\(outcome.standardError)")
            #expect(outcome.standardError.contains(expected), "\(outcome.standardError)")
        }
    }

    @Test("a malformed inventory names the file and line")
    func malformedInventory() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("hosts.yaml")
        try "hosts:\n  a:\n    libvirt_uri: qemu:///system\n    colour: red\n".write(
            to: file, atomically: true, encoding: .utf8)
        let outcome = try check(["vm", "--from", "a", "--to", "a", "--inventory", file.path])
        #expect(outcome.status == 2)
        #expect(
            outcome.standardError.contains("hosts.yaml:4:5: unknown key 'colour' in host 'a'"),
            "\(outcome.standardError)")
    }

    @Test("an agent that is not running exits 3, naming it")
    func agentDown() throws {
        let outcome = try check([
            "vm-t4", "--from", "t4-a", "--to", "down", "--inventory", fixtureInventory, "--domain-xml",
            domainXML("vm-t4"),
        ])
        #expect(outcome.status == 3)
        #expect(outcome.standardError.contains("cannot reach host down's agent at http://127.0.0.1:1"))
    }

    @Test("a destination read through its running agent: T4 → T4 passes")
    func throughAgent() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (agent, url, _) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        try """
        hosts:
          t4-a:
            sysfs_root: \(fixture("t4-a"))
          t4-b:
            agent_url: \(url)
            credentials: token
        """.write(to: directory.appendingPathComponent("hosts.yaml"), atomically: true, encoding: .utf8)
        let outcome = try check([
            "vm-t4", "--from", "t4-a", "--to", "t4-b", "--inventory",
            directory.appendingPathComponent("hosts.yaml").path,
            "--domain-xml", domainXML("vm-t4"),
        ])
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("PASS  vgpu.capacity       t4-b can create 4 more GRID T4-4Q"))
    }

    @Test("an unreachable libvirt host exits 3")
    func unreachable() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("hosts.yaml")
        try
            "hosts:\n  a:\n    libvirt_uri: qemu+unix:///system?socket=\(directory.path)/no-daemon.sock\n  b:\n    sysfs_root: \(fixture("t4-b"))\n"
            .write(to: file, atomically: true, encoding: .utf8)
        let outcome = try check(["vm", "--from", "a", "--to", "b", "--inventory", file.path])
        #expect(outcome.status == 3, "\(outcome.standardError)")
        #expect(outcome.standardError.contains("cannot reach host a through libvirt"))
    }
}

/// Fixture hosts read in-process, for ranking helpers.
enum CheckFixtureData {
    static func host(_ name: String) throws -> HostInventory {
        let outcome = try inspect(["--sysfs-root", fixture(name), "--json"])
        return try JSONDecoder().decode(HostInventory.self, from: Data(outcome.standardOutput.utf8))
    }
}
