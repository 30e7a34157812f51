import Foundation
import Testing
import VGPUMigrationCore

@testable import VGPUMigrationStorage

@Suite("the local record journal: one folder per store, one file per record, replaced whole")
struct DirectoryRecordJournalTests {
    func temporaryRoot() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-journal-\(UUID().uuidString)")
    }

    @Test("kept records read back; a newer copy replaces the older; forgotten ones are gone")
    func keepReplaceForget() throws {
        let root = temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let journal = DirectoryRecordJournal(root: root, storeLocation: "/var/lib/vgpu-migrate/history.sqlite")
        #expect(try journal.records().isEmpty)
        var record = MigrationRecord(id: "m-1", vm: "vm", source: "a", destination: "b", policy: "p", at: t0)
        try journal.keep(record)
        try record.transition(to: .checking, reason: "pre-flight", at: t0)
        record.note("the history store could not be written", at: t0)
        try journal.keep(record)
        try journal.keep(MigrationRecord(id: "m-2", vm: "vm2", source: "a", destination: "b", policy: "p", at: t0))
        #expect(try journal.records().map(\.id) == ["m-1", "m-2"])
        #expect(try journal.records().first == record)
        try journal.forget("m-1")
        try journal.forget("m-1")
        #expect(try journal.records().map(\.id) == ["m-2"])
        // Nothing half-written is left beside the records.
        let names = try FileManager.default.contentsOfDirectory(atPath: journal.location).sorted()
        #expect(names == ["m-2.json", "store"])
    }

    @Test("two stores keep their records apart, and the folder names its store")
    func oneFolderPerStore() throws {
        let root = temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let sqlite = DirectoryRecordJournal(root: root, storeLocation: "/tmp/a/history.sqlite")
        let postgres = DirectoryRecordJournal(root: root, storeLocation: "postgres://vgpu@db:5432/history")
        try sqlite.keep(MigrationRecord(id: "m-1", vm: "vm", source: "a", destination: "b", policy: "p", at: t0))
        #expect(try postgres.records().isEmpty)
        #expect(sqlite.location != postgres.location)
        #expect(
            try String(contentsOfFile: sqlite.location + "/store", encoding: .utf8) == "/tmp/a/history.sqlite\n")
    }

    @Test("a damaged record file is named in the error, not skipped")
    func damagedFile() throws {
        let root = temporaryRoot()
        defer { try? FileManager.default.removeItem(at: root) }
        let journal = DirectoryRecordJournal(root: root, storeLocation: "/tmp/history.sqlite")
        try journal.keep(MigrationRecord(id: "m-1", vm: "vm", source: "a", destination: "b", policy: "p", at: t0))
        try Data("{\"id\": ".utf8).write(to: URL(fileURLWithPath: journal.location + "/m-1.json"))
        #expect {
            try journal.records()
        } throws: { error in
            "\(error)".contains("m-1.json")
        }
    }
}
