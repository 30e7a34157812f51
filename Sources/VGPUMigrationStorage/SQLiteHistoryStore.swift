import Foundation
import GRDB
import VGPUMigrationCore

/// The history in a SQLite file (the default), shared safely by several processes on one host.
///
/// WAL journal, schema migrations, indexes for every `history` filter, and a partial unique
/// index that allows one unfinished migration per VM: the database itself refuses a second
/// coordinator's migration of a VM that is already moving.
package final class SQLiteHistoryStore: HistoryStore {
    private let pool: DatabasePool
    package let path: String

    /// Opens (or creates) the database at `path`, applying the schema migrations.
    ///
    /// `forReadingOnly` (for `history` and `show`): an existing database with the current schema
    /// is opened read-only, so listing writes nothing (opening it for writing sets up the WAL
    /// file, a write transaction and a sync each time). Anything else, such as a missing file or
    /// an older schema, is opened as usual.
    package init(path: String, forReadingOnly: Bool = false) throws(HistoryStoreError) {
        self.path = path
        if forReadingOnly, FileManager.default.fileExists(atPath: path), let pool = Self.currentForReading(path) {
            self.pool = pool
            return
        }
        do {
            let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
            if !FileManager.default.fileExists(atPath: directory.path) {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            }
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            configuration.label = "vgpu-migrate.history"
            pool = try DatabasePool(path: path, configuration: configuration)
            // A read tells whether the schema is current; only then is a write transaction needed.
            let migrator = Self.migrator
            if try !pool.read(migrator.hasCompletedMigrations) { try migrator.migrate(pool) }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    /// The database at `path` opened read-only, if that works and its schema is current.
    private static func currentForReading(_ path: String) -> DatabasePool? {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        configuration.label = "vgpu-migrate.history"
        guard let pool = try? DatabasePool(path: path, configuration: configuration),
            (try? pool.read(migrator.hasCompletedMigrations)) == true
        else { return nil }
        return pool
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("1-migrations") { db in
            try db.execute(
                sql: """
                    CREATE TABLE migrations (
                        id TEXT PRIMARY KEY NOT NULL,
                        vm TEXT NOT NULL,
                        source TEXT NOT NULL,
                        destination TEXT NOT NULL,
                        status TEXT NOT NULL,
                        policy TEXT NOT NULL,
                        downtime_ms INTEGER,
                        duration_s REAL NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        record TEXT NOT NULL
                    );
                    CREATE INDEX migrations_by_time ON migrations(created_at DESC);
                    CREATE INDEX migrations_by_vm ON migrations(vm, created_at DESC);
                    CREATE INDEX migrations_by_source ON migrations(source, created_at DESC);
                    CREATE INDEX migrations_by_destination ON migrations(destination, created_at DESC);
                    CREATE INDEX migrations_by_status ON migrations(status, created_at DESC);
                    CREATE UNIQUE INDEX one_unfinished_migration_per_vm ON migrations(vm)
                        WHERE status NOT IN ('completed', 'failed', 'cancelled');
                    """)
        }
        // The other filters' columns in the vm, source and destination indexes: a combined filter
        // is decided in the index, and only the rows listed are read from the table (`history
        // --vm V --host H` on a million records read a thousand table pages before).
        migrator.registerMigration("2-filter-columns-in-indexes") { db in
            try db.execute(
                sql: """
                    DROP INDEX migrations_by_vm;
                    DROP INDEX migrations_by_source;
                    DROP INDEX migrations_by_destination;
                    CREATE INDEX migrations_by_vm ON migrations(vm, created_at DESC, status, source, destination);
                    CREATE INDEX migrations_by_source ON migrations(source, created_at DESC, status, vm);
                    CREATE INDEX migrations_by_destination ON migrations(destination, created_at DESC, status, vm);
                    """)
        }
        // Hosts marked as no destination (`vgpu-migrate cordon`).
        migrator.registerMigration("3-cordons") { db in
            try db.execute(
                sql: """
                    CREATE TABLE cordons (
                        host TEXT PRIMARY KEY NOT NULL,
                        reason TEXT NOT NULL,
                        since REAL NOT NULL,
                        by TEXT
                    );
                    """)
        }
        // Drains (`vgpu-migrate drain`): the record is the JSON of a DrainRecord.
        migrator.registerMigration("4-drains") { db in
            try db.execute(
                sql: """
                    CREATE TABLE drains (
                        id TEXT PRIMARY KEY NOT NULL,
                        host TEXT NOT NULL,
                        status TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        record TEXT NOT NULL
                    );
                    CREATE INDEX drains_by_time ON drains(created_at DESC);
                    """)
        }
        return migrator
    }

    package func cordon(_ cordon: HostCordon) async throws(HistoryStoreError) -> (HostCordon, created: Bool) {
        do {
            return try await pool.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO cordons (host, reason, since, by) VALUES (?, ?, ?, ?) ON CONFLICT(host) DO NOTHING",
                    arguments: [cordon.host, cordon.reason, cordon.since.timeIntervalSince1970, cordon.by])
                let created = db.changesCount == 1
                return (try Self.cordon(of: cordon.host, in: db) ?? cordon, created)
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func uncordon(host: String) async throws(HistoryStoreError) -> HostCordon? {
        do {
            return try await pool.write { db in
                let existing = try Self.cordon(of: host, in: db)
                try db.execute(sql: "DELETE FROM cordons WHERE host = ?", arguments: [host])
                return existing
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func cordons() async throws(HistoryStoreError) -> [HostCordon] {
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: "SELECT host, reason, since, by FROM cordons ORDER BY host").map(Self.cordon)
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    private static func cordon(of host: String, in db: Database) throws -> HostCordon? {
        try Row.fetchOne(db, sql: "SELECT host, reason, since, by FROM cordons WHERE host = ?", arguments: [host])
            .map(cordon)
    }

    private static func cordon(_ row: Row) -> HostCordon {
        HostCordon(
            host: row["host"], reason: row["reason"], since: Date(timeIntervalSince1970: row["since"]), by: row["by"])
    }

    package func saveDrain(_ drain: DrainRecord) async throws(HistoryStoreError) {
        let text = try encodeDrain(drain)
        do {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO drains (id, host, status, created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?)
                        ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at,
                            record = excluded.record
                        """,
                    arguments: [
                        drain.id, drain.host, drain.state.rawValue, drain.createdAt.timeIntervalSince1970,
                        drain.updatedAt.timeIntervalSince1970, text,
                    ])
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func drain(id: String) async throws(HistoryStoreError) -> DrainRecord? {
        let rows = try await recordTexts(in: "drains", id: id)
        let drains = try rows.map { (text) throws(HistoryStoreError) in try decodeDrain(text) }
        if drains.count > 1 { throw .ambiguous(id, drains.map(\.id)) }
        return drains.first
    }

    package func drains(limit: Int) async throws(HistoryStoreError) -> [DrainRecord] {
        let rows: [String]
        do {
            rows = try await pool.read { db in
                try String.fetchAll(
                    db, sql: "SELECT record FROM drains ORDER BY created_at DESC, id DESC LIMIT ?", arguments: [limit])
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
        return try rows.map { (text) throws(HistoryStoreError) in try decodeDrain(text) }
    }

    package func begin(_ record: MigrationRecord) async throws(HistoryStoreError) {
        let arguments = try RecordRow(record).arguments
        do {
            try await pool.write { db in
                try db.execute(
                    sql: """
                        INSERT INTO migrations (id, vm, source, destination, status, policy, downtime_ms, duration_s,
                            created_at, updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, arguments: arguments)
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            if let busy = try await unfinished(vm: record.vm) {
                throw .vmBusy(vm: record.vm, migration: busy.id, state: busy.state)
            }
            throw .duplicateID(record.id)
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func save(_ record: MigrationRecord) async throws(HistoryStoreError) {
        let row = try RecordRow(record)
        // The id goes last, for the WHERE clause.
        let arguments = StatementArguments(Array(row.values.dropFirst()) + [row.values[0]])
        let changed: Int
        do {
            changed = try await pool.write { db in
                try db.execute(
                    sql: """
                        UPDATE migrations SET vm = ?, source = ?, destination = ?, status = ?, policy = ?,
                            downtime_ms = ?, duration_s = ?, created_at = ?, updated_at = ?, record = ?
                        WHERE id = ?
                        """, arguments: arguments)
                return db.changesCount
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            let busy = try await unfinished(vm: record.vm)
            throw .vmBusy(vm: record.vm, migration: busy?.id ?? "?", state: busy?.state ?? .unknown)
        } catch {
            throw .unavailable("\(path): \(error)")
        }
        if changed == 0 { throw .notFound(record.id) }
    }

    package func record(id: String) async throws(HistoryStoreError) -> MigrationRecord? {
        let rows = try await recordTexts(in: "migrations", id: id)
        let records = try rows.map { (text) throws(HistoryStoreError) in try decodeRecord(text) }
        if records.count > 1 { throw .ambiguous(id, records.map(\.id)) }
        return records.first
    }

    /// The stored JSON of the row of `table` (`migrations` or `drains`) whose id is `id`, else of
    /// the rows whose id starts with it (two at most: more than one is ambiguous to the caller).
    private func recordTexts(in table: StaticString, id: String) async throws(HistoryStoreError) -> [String] {
        let name = "\(table)"
        do {
            return try await pool.read { db in
                if let exact = try String.fetchOne(db, sql: "SELECT record FROM \(name) WHERE id = ?", arguments: [id])
                {
                    return [exact]
                }
                return try String.fetchAll(
                    db, sql: "SELECT record FROM \(name) WHERE id LIKE ? ESCAPE '\\' LIMIT 2",
                    arguments: [likePrefix(id)])
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func list(_ filter: HistoryFilter) async throws(HistoryStoreError) -> [MigrationSummary] {
        let columns = "id, vm, source, destination, status, policy, downtime_ms, duration_s, created_at, updated_at"
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let vm = filter.vm {
            conditions.append("vm = ?")
            arguments.append(vm)
        }
        if let state = filter.state {
            conditions.append("status = ?")
            arguments.append(state.rawValue)
        }
        if let since = filter.since {
            conditions.append("created_at >= ?")
            arguments.append(since.timeIntervalSince1970)
        }
        let sql: String
        var allArguments: [(any DatabaseValueConvertible)?]
        if let host = filter.host {
            // Source or destination: two scans in index order, each cut at the limit, then merged;
            // one query with OR would sort every match of the host first.
            func side(_ column: String) -> String {
                let clause = (["\(column) = ?"] + conditions).joined(separator: " AND ")
                return
                    "SELECT * FROM (SELECT \(columns) FROM migrations WHERE \(clause) ORDER BY created_at DESC LIMIT ?)"
            }
            sql = "\(side("source")) UNION \(side("destination")) ORDER BY created_at DESC, id DESC LIMIT ?"
            allArguments = [host] + arguments + [filter.limit] + [host] + arguments + [filter.limit, filter.limit]
        } else {
            let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
            sql = "SELECT \(columns) FROM migrations \(whereClause) ORDER BY created_at DESC, id DESC LIMIT ?"
            allArguments = arguments + [filter.limit]
        }
        let statementArguments = StatementArguments(allArguments)
        do {
            return try await pool.read { db in
                try Row.fetchAll(db, sql: sql, arguments: statementArguments).map { row in
                    MigrationSummary(
                        id: row["id"], vm: row["vm"], source: row["source"], destination: row["destination"],
                        state: MigrationState(rawValue: row["status"]) ?? .unknown, policy: row["policy"],
                        downtimeMilliseconds: (row["downtime_ms"] as Int64?).map { UInt64(max(0, $0)) },
                        durationSeconds: row["duration_s"],
                        createdAt: Date(timeIntervalSince1970: row["created_at"]),
                        updatedAt: Date(timeIntervalSince1970: row["updated_at"]))
                }
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
    }

    package func unfinished() async throws(HistoryStoreError) -> [MigrationRecord] {
        let rows: [String]
        do {
            rows = try await pool.read { db in
                try String.fetchAll(
                    db,
                    sql: """
                        SELECT record FROM migrations WHERE status NOT IN ('completed', 'failed', 'cancelled')
                        ORDER BY created_at
                        """)
            }
        } catch {
            throw .unavailable("\(path): \(error)")
        }
        return try rows.map { (text) throws(HistoryStoreError) in try decodeRecord(text) }
    }

    private func unfinished(vm: String) async throws(HistoryStoreError) -> MigrationRecord? {
        try await unfinished().first { $0.vm == vm }
    }
}

/// The columns of one record, shared by both stores.
struct RecordRow {
    var values: [(any DatabaseValueConvertible)?]

    init(_ record: MigrationRecord) throws(HistoryStoreError) {
        values = [
            record.id, record.vm, record.source, record.destination, record.state.rawValue, record.policy,
            record.downtimeMilliseconds.map { Int64(clamping: $0) }, record.durationSeconds,
            record.createdAt.timeIntervalSince1970, record.updatedAt.timeIntervalSince1970, try encodeRecord(record),
        ]
    }

    var arguments: StatementArguments { StatementArguments(values) }
}

func encodeRecord(_ record: MigrationRecord) throws(HistoryStoreError) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    do {
        return String(decoding: try encoder.encode(record), as: UTF8.self)
    } catch {
        throw .corrupt("cannot encode migration \(record.id): \(error)")
    }
}

func decodeRecord(_ text: String) throws(HistoryStoreError) -> MigrationRecord {
    do {
        return try JSONDecoder().decode(MigrationRecord.self, from: Data(text.utf8))
    } catch {
        throw .corrupt("\(error)")
    }
}

func encodeDrain(_ drain: DrainRecord) throws(HistoryStoreError) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    do {
        return String(decoding: try encoder.encode(drain), as: UTF8.self)
    } catch {
        throw .corrupt("cannot encode drain \(drain.id): \(error)")
    }
}

func decodeDrain(_ text: String) throws(HistoryStoreError) -> DrainRecord {
    do {
        return try JSONDecoder().decode(DrainRecord.self, from: Data(text.utf8))
    } catch {
        throw .corrupt("drain: \(error)")
    }
}

/// `abc` → `abc%` with LIKE's wildcards escaped.
func likePrefix(_ prefix: String) -> String {
    prefix.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
        .replacingOccurrences(of: "_", with: "\\_") + "%"
}
