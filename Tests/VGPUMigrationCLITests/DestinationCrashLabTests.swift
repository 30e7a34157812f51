import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

/// A lab of its own: the test kills one of its daemons.
@Suite("migrate when the destination daemon dies", .serialized, .twoHostLab, .tags(.lab))
struct DestinationCrashLabTests {
    @Test("destination libvirtd killed during a migration → failed, guest still running on src")
    func destinationDies() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (migration, _, database, _) = try startCrawlingMigration(
            lab, vm: "e2e-crash", memoryMiB: 8192, in: directory)
        defer { migration.stop() }
        #expect(migration.waitForLine { $0.hasPrefix("migrating (") } != nil, "\(migration.standardError)")
        try lab.killDaemon("dst")
        let ended = migration.waitForLine(within: 120) { $0.hasPrefix("failed: ") }
        #expect(ended?.contains("migration failed") == true, "\(migration.standardOutput)")
        let id = try #require(migrationID(of: migration))
        let show = try ProductRunner.run("vgpu-migrate", ["show", String(id), "--database", database, "--json"])
        let record = try decodedJSON(MigrationRecord.self, from: show.standardOutput)
        #expect(record.state == .failed)
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .failed])
        #expect(try lab.virsh(lab.sourceURI, ["domstate", "e2e-crash"]).standardOutput.hasPrefix("running"))
    }
}
