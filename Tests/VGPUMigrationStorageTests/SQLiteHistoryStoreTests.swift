import Foundation
import GRDB
import Testing
import VGPUMigrationCore

@testable import VGPUMigrationStorage

@Suite("SQLite history: schema upgrades, reading without writing")
struct SQLiteHistoryStoreTests {
    @Test(
        "a history written with the first schema opens, keeps its records, and gets the filter columns in its indexes",
        arguments: [false, true])
    func upgradeFromFirstSchema(forReadingOnly: Bool) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgpu-history-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("history.sqlite").path
        var record = migration("44444444-0000-4000-8000-000000000001", vm: "vm-old", from: "a", to: "b")
        try finish(&record)
        do {
            let old = try DatabaseQueue(path: path)
            try SQLiteHistoryStore.migrator.migrate(old, upTo: "1-migrations")
            let arguments = try RecordRow(record).arguments
            try await old.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO migrations (id, vm, source, destination, status, policy, downtime_ms, duration_s,
                            created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: arguments)
            }
            let columns = try await old.read { db in
                try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info('migrations_by_vm') ORDER BY seqno")
            }
            #expect(columns == ["vm", "created_at"])
        }

        let store = try SQLiteHistoryStore(path: path, forReadingOnly: forReadingOnly)
        let listed = try await store.list(HistoryFilter(vm: "vm-old", host: "b", state: .completed, limit: 10))
        #expect(listed.map(\.id) == [record.id])
        #expect(try await store.record(id: record.id) == record)

        let reader = try DatabaseQueue(path: path)
        let indexes = try await reader.read { db in
            try ["migrations_by_vm", "migrations_by_source", "migrations_by_destination"].map { index in
                try String.fetchAll(db, sql: "SELECT name FROM pragma_index_info(?) ORDER BY seqno", arguments: [index])
            }
        }
        #expect(indexes[0] == ["vm", "created_at", "status", "source", "destination"])
        #expect(indexes[1] == ["source", "created_at", "status", "vm"])
        #expect(indexes[2] == ["destination", "created_at", "status", "vm"])
    }

    @Test("opened for reading only, a current history is read without a single write to its file")
    func readingWritesNothing() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgpu-history-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("history.sqlite").path
        var record = migration("55555555-0000-4000-8000-000000000001", vm: "vm-read")
        do {
            let writer = try SQLiteHistoryStore(path: path)
            try await writer.begin(record)
            try finish(&record)
            try await writer.save(record)
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        do {
            let reader = try SQLiteHistoryStore(path: path, forReadingOnly: true)
            #expect(try await reader.list(HistoryFilter(limit: 10)).map(\.id) == [record.id])
            #expect(try await reader.record(id: "55555555") == record)
            await #expect(throws: HistoryStoreError.self) { try await reader.save(record) }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        // The same through a store opened for writing changes the file (what reading avoids).
        do {
            let writer = try SQLiteHistoryStore(path: path)
            _ = try await writer.list(HistoryFilter(limit: 10))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) != before)
    }
}
