import Foundation
import VGPUHost
import VGPUMigrationCore

/// The local journal: migration records kept as files while their history store cannot be
/// written, one directory per store (so a record goes back only into the store it came from),
/// one file per migration, each replaced whole and flushed to disk.
package struct DirectoryRecordJournal: RecordJournal {
    /// The directory of this store's records.
    package let directory: URL
    /// The store the records belong to (its location without a password).
    package let store: String

    /// The journal of the store at `storeLocation` under `root`.
    package init(root: URL, storeLocation: String) {
        store = storeLocation
        directory = root.appendingPathComponent(Self.folderName(for: storeLocation), isDirectory: true)
    }

    package var location: String { directory.path }

    /// Where journals are kept: $VGPU_MIGRATE_JOURNAL, else /var/lib/vgpu-migrate/journal for
    /// root, else $XDG_STATE_HOME (~/.local/state)/vgpu-migrate/journal.
    package static func defaultRoot(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let explicit = environment["VGPU_MIGRATE_JOURNAL"], !explicit.isEmpty {
            return URL(fileURLWithPath: explicit, isDirectory: true)
        }
        if getuid() == 0 { return URL(fileURLWithPath: "/var/lib/vgpu-migrate/journal", isDirectory: true) }
        let state =
            environment["XDG_STATE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/state")
        return state.appendingPathComponent("vgpu-migrate/journal", isDirectory: true)
    }

    package func keep(_ record: MigrationRecord) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let label = directory.appendingPathComponent("store")
        if !FileManager.default.fileExists(atPath: label.path) {
            try AtomicFile.replace(label, with: Array((store + "\n").utf8), durable: true)
        }
        try AtomicFile.replace(file(record.id), with: Array(try encodeRecord(record).utf8), durable: true)
    }

    package func forget(_ id: String) throws {
        do {
            try FileManager.default.removeItem(at: file(id))
        } catch CocoaError.fileNoSuchFile {
            return
        }
    }

    package func records() throws -> [MigrationRecord] {
        guard
            let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path)
                .filter({ $0.hasSuffix(".json") && !AtomicFile.isTemporary($0) }).sorted()
        else { return [] }
        var records: [MigrationRecord] = []
        for name in names {
            let path = directory.appendingPathComponent(name).path
            do {
                records.append(try decodeRecord(try UTF8Text.decode(try Data(contentsOf: URL(fileURLWithPath: path)))))
            } catch {
                throw HistoryStoreError.corrupt("\(path): \(error)")
            }
        }
        return records
    }

    private func file(_ id: String) -> URL {
        directory.appendingPathComponent(
            "\(id.filter { $0.isLetter || $0.isNumber || $0 == "-" }).json")
    }

    /// A folder name for a store location: readable, and unique by a hash of the whole location.
    static func folderName(for location: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in location.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        let last: Substring = location.split(separator: "/").last ?? "store"
        let characters: [Character] = last.prefix(40).map { $0.isLetter || $0.isNumber ? $0 : "-" }
        let readable = String(characters)
        return "\(readable)-\(String(hash, radix: 16))"
    }
}
