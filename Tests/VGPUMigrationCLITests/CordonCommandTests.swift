import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@Suite("vgpu-migrate cordon and uncordon")
struct CordonCommandTests {
    /// Two fixture hosts read from sysfs, and a history of the test's own.
    func setting(_ directory: URL) throws -> [String] {
        let inventory = directory.appendingPathComponent("hosts.yaml")
        try """
        hosts:
          t4-a:
            sysfs_root: \(fixture("t4-a"))
          t4-b:
            sysfs_root: \(fixture("t4-b"))
        """.write(to: inventory, atomically: true, encoding: .utf8)
        return [
            "--inventory", inventory.path, "--database", directory.appendingPathComponent("history.sqlite").path,
        ]
    }

    @Test("cordon, list, cordon again, uncordon; an unknown host is refused (exit 2)")
    func cordonAndUncordon() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)
        let database = Array(common.suffix(2))

        let empty = try ProductRunner.run("vgpu-migrate", ["cordon"] + common)
        #expect(empty.status == 0 && empty.standardOutput == "No host is cordoned.\n", "\(empty.standardError)")
        let cordoned = try ProductRunner.run("vgpu-migrate", ["cordon", "t4-b", "--reason", "driver update"] + common)
        #expect(cordoned.status == 0, "\(cordoned.standardError)")
        #expect(
            cordoned.standardOutput == "cordoned t4-b: no migration goes there until 'vgpu-migrate uncordon t4-b'\n")
        let again = try ProductRunner.run("vgpu-migrate", ["cordon", "t4-b", "--reason", "other"] + common)
        #expect(again.standardOutput.hasPrefix("t4-b was already cordoned: t4-b  cordoned "), "\(again.standardOutput)")
        #expect(again.standardOutput.hasSuffix(": driver update\n"))
        let listed = try ProductRunner.run("vgpu-migrate", ["cordon", "--json"] + common)
        let cordons = try decodedJSON([HostCordon].self, from: listed.standardOutput)
        #expect(cordons.map(\.host) == ["t4-b"] && cordons.first?.reason == "driver update")
        #expect(cordons.first?.by?.contains("@") == true)

        let unknown = try ProductRunner.run("vgpu-migrate", ["cordon", "t4-z"] + common)
        #expect(unknown.status == 2)
        #expect(unknown.standardError.contains("host 't4-z' is not in the inventory"), "\(unknown.standardError)")

        let lifted = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b"] + database)
        #expect(lifted.status == 0 && lifted.standardOutput.hasPrefix("uncordoned t4-b (t4-b  cordoned "))
        let notThere = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b"] + database)
        #expect(notThere.status == 0 && notThere.standardOutput == "t4-b was not cordoned\n")
    }

    @Test("migrate to a cordoned host is refused before anything is recorded (exit 2), and goes on once uncordoned")
    func migrateRefusesCordoned() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)
        _ = try ProductRunner.run("vgpu-migrate", ["cordon", "t4-b", "--reason", "fan"] + common)

        let refused = try ProductRunner.run(
            "vgpu-migrate",
            ["migrate", "vm-t4", "--from", "t4-a", "--to", "t4-b", "--policies", TestData.policies.path]
                + common)
        #expect(refused.status == 2, "\(refused.standardOutput)\(refused.standardError)")
        #expect(
            refused.standardError.contains("error: t4-b is cordoned (fan, by "), "\(refused.standardError)")
        #expect(refused.standardError.contains("hint: 'vgpu-migrate uncordon t4-b' once its maintenance is over"))
        let store = try SQLiteHistoryStore(path: common[3])
        #expect(try await store.list(HistoryFilter()).isEmpty)

        // Uncordoned, the same migration gets past the cordon (and fails later: t4-a has no
        // libvirt connection here).
        _ = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b", "--database", common[3]])
        let tried = try ProductRunner.run(
            "vgpu-migrate",
            ["migrate", "vm-t4", "--from", "t4-a", "--to", "t4-b", "--policies", TestData.policies.path]
                + common)
        #expect(tried.status == 1, "\(tried.standardOutput)\(tried.standardError)")
        #expect(tried.standardOutput.contains("t4-a has no libvirt connection"), "\(tried.standardOutput)")
    }

    @Test("check --to auto leaves a cordoned host out, naming its cordon; uncordoned it ranks first again")
    func autoLeavesCordonedOut() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = ["--database", directory.appendingPathComponent("history.sqlite").path]
        let auto = [
            "vm-t4", "--from", "t4-a", "--to", "auto", "--inventory", fixtureInventory, "--domain-xml",
            domainXML("vm-t4"), "--json",
        ]
        let cordon = try ProductRunner.run(
            "vgpu-migrate", ["cordon", "t4-b", "--reason", "driver update", "--inventory", fixtureInventory] + database)
        #expect(cordon.status == 0, "\(cordon.standardError)")

        let ranked = try check(auto + database)
        // t4-b was the one compatible host: with it cordoned there is none (exit 1).
        #expect(ranked.status == 1, "\(ranked.standardError)")
        let ranking = try JSONDecoder().decode(DestinationRanking.self, from: Data(ranked.standardOutput.utf8))
        let t4b = try #require(ranking.candidates.first { $0.host == "t4-b" })
        #expect(!t4b.compatible && t4b.report == nil)
        #expect(t4b.reasons.first?.hasPrefix("cordoned: driver update, by ") == true, "\(t4b.reasons)")
        #expect(ranking.best == nil)

        _ = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b"] + database)
        let again = try check(auto + database)
        #expect(again.status == 0, "\(again.standardError)")
        #expect(
            try JSONDecoder().decode(DestinationRanking.self, from: Data(again.standardOutput.utf8)).best?.host
                == "t4-b")
    }

    @Test("check to a cordoned host fails with host.cordoned; uncordon --json prints the cordon it lifted")
    func checkAndUncordonJSON() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)
        let check = [
            "check", "vm-t4", "--from", "t4-a", "--to", "t4-b", "--domain-xml", domainXML("vm-t4"), "--policies",
            TestData.policies.path, "--json",
        ]
        let before = try ProductRunner.run("vgpu-migrate", check + common)
        #expect(!before.standardOutput.contains("host.cordoned"), "\(before.standardOutput)")
        _ = try ProductRunner.run("vgpu-migrate", ["cordon", "t4-b", "--reason", "fan"] + common)
        let cordoned = try ProductRunner.run("vgpu-migrate", check + common)
        #expect(cordoned.status == 1, "\(cordoned.standardError)")
        let report = try decodedJSON(CompatibilityReport.self, from: cordoned.standardOutput)
        let finding = try #require(report.findings.first { $0.check == "host.cordoned" })
        #expect(finding.severity == .fail && finding.message.hasPrefix("t4-b is cordoned (fan, by "))
        let lifted = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b", "--json"] + common.suffix(2))
        #expect(try decodedJSON(HostCordon.self, from: lifted.standardOutput).reason == "fan")
        let none = try ProductRunner.run("vgpu-migrate", ["uncordon", "t4-b", "--json"] + common.suffix(2))
        #expect(none.status == 0 && none.standardOutput == "null\n")
        let after = try ProductRunner.run("vgpu-migrate", check + common)
        #expect(!after.standardOutput.contains("host.cordoned"))
    }
}
