import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@Suite("the settings file (VGPU_MIGRATE_CONFIG, ~/.config/vgpu-migrate/config.yaml, /etc/vgpu-migrate/config.yaml)")
struct SettingsFileTests {
    private func settings(_ text: String, in directory: URL) throws -> [String: String] {
        let file = directory.appendingPathComponent("config.yaml")
        try text.write(to: file, atomically: true, encoding: .utf8)
        return ["VGPU_MIGRATE_CONFIG": file.path]
    }

    @Test("database names the history (a SQLite path relative to the file); --database still wins")
    func sqliteFromSettings() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (_, records) = try await historyDatabase(in: directory)
        let environment = try settings("database: history.sqlite\n", in: directory)
        let listed = try ProductRunner.run("vgpu-migrate", ["history", "--json"], environment: environment)
        #expect(listed.status == 0, "\(listed.standardError)")
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(listed.standardOutput.utf8)) as? [[String: Any]])
        #expect(Set(rows.compactMap { $0["id"] as? String }) == Set(records.map(\.id)))

        let other = directory.appendingPathComponent("other.sqlite").path
        let explicit = try ProductRunner.run(
            "vgpu-migrate", ["history", "--json", "--database", other], environment: environment)
        #expect(explicit.status == 0, "\(explicit.standardError)")
        let none = try JSONSerialization.jsonObject(with: Data(explicit.standardOutput.utf8)) as? [Any]
        #expect(none?.isEmpty == true, "\(explicit.standardOutput)")
    }

    @Test("database: postgres://... puts the history in a real PostgreSQL server")
    func postgresFromSettings() async throws {
        let server = try PostgresServer.start()
        defer { server.stop() }
        let url = try server.createDatabase()
        let store = try await PostgresHistoryStore.open(url: url)
        let record = MigrationRecord(
            id: "abcdef01-2222-4000-8000-000000000001", vm: "vm-shared", source: "gpu-1", destination: "gpu-2",
            policy: "adaptive", at: Date())
        try await store.begin(record)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let environment = try settings("# shared by the coordinators\ndatabase: \(url)\n", in: directory)
        let listed = try ProductRunner.run("vgpu-migrate", ["history", "--vm", "vm-shared"], environment: environment)
        #expect(listed.status == 0, "\(listed.standardError)")
        #expect(listed.standardOutput.contains("abcdef01  vm-shared  gpu-1"), "\(listed.standardOutput)")
    }

    @Test(
        "a bad settings file: the file, line and what is wrong; exit 2",
        arguments: [
            ("database: /tmp/h.sqlite\nhistroy: 3\n", "config.yaml:2:1"),
            ("database: ''\n", "config.yaml:1:11: database must be a non-empty text"),
            ("database: [a, b]\n", "config.yaml:1:11"),
            ("database: /tmp/h.sqlite\n  bad: indentation\n", "config.yaml:"),
        ])
    func badSettings(text: String, fragment: String) throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["history"], environment: try settings(text, in: directory))
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains(fragment), "\(outcome.standardError)")
    }

    @Test("VGPU_MIGRATE_CONFIG naming a missing file is an error, not a silent default")
    func missingNamedFile() throws {
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["history"], environment: ["VGPU_MIGRATE_CONFIG": "/nonexistent/vgpu-migrate.yaml"])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("/nonexistent/vgpu-migrate.yaml: cannot read the settings file"))
    }
}
