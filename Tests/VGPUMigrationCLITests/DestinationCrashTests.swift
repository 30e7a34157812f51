import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

/// A lab of its own: the test kills one of its daemons.
@Suite("migrate when the destination daemon dies", .serialized, .twoHostLab)
struct DestinationCrashTests {
    @Test("destination libvirtd killed during a migration → failed, guest still running on src")
    func destinationDies() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try startLabGuest(lab, name: "e2e-crash", memoryMiB: 8192)
        let policies = try policiesWith(
            "slow", from: "adaptive", in: directory,
            [("  on_timeout: force-switchover", "  on_timeout: force-switchover\n  bandwidth_mib_per_s: 1")])
        let database = directory.appendingPathComponent("history.sqlite").path
        let migration = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"),
            [
                "migrate", "e2e-crash", "--from", "src", "--to", "dst", "--policy", "slow", "--inventory",
                try labInventory(lab, in: directory), "--database", database, "--policies", policies,
            ], directory: directory)
        defer { migration.stop() }
        #expect(migration.waitForLine { $0.hasPrefix("migrating (") } != nil, "\(migration.standardError)")
        try lab.killDaemon("dst")
        let ended = migration.waitForLine(within: 120) { $0.hasPrefix("failed: ") }
        #expect(ended?.contains("migration failed") == true, "\(migration.standardOutput)")
        let id = try #require(
            migration.standardOutput.split(separator: "\n").first?.split(separator: " ")[1].dropLast())
        let show = try ProductRunner.run("vgpu-migrate", ["show", String(id), "--database", database, "--json"])
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let record = try decoder.decode(MigrationRecord.self, from: Data(show.standardOutput.utf8))
        #expect(record.state == .failed)
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .failed])
        #expect(try lab.virsh(lab.sourceURI, ["domstate", "e2e-crash"]).standardOutput.hasPrefix("running"))
    }
}
