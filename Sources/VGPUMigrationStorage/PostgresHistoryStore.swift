import Foundation
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization
import VGPUMigrationCore

/// The history in PostgreSQL, for several coordinators sharing one history.
///
/// Same schema and guarantees as ``SQLiteHistoryStore``: the partial unique index on unfinished
/// migrations lets one coordinator migrate a VM at a time, whichever coordinator asks.
package final class PostgresHistoryStore: HistoryStore {
    private let pool: ClientPool
    private let connectionConfiguration: PostgresConnection.Configuration
    /// The URL without its password, for messages.
    package let location: String

    /// Connects to `url` (`postgres://user:password@host:port/database`) and applies the schema.
    package static func open(url: String) async throws(HistoryStoreError) -> PostgresHistoryStore {
        let store = try PostgresHistoryStore(url: url)
        // One direct attempt first: the pool would keep retrying a server that is not there.
        do {
            let connection = try await PostgresConnection.connect(
                configuration: store.connectionConfiguration, id: 0, logger: quietLogger())
            try await connection.close()
        } catch {
            throw .unavailable("\(store.location): \(String(reflecting: error))")
        }
        do {
            try await store.migrate()
        } catch {
            throw .unavailable("\(store.location): \(error)")
        }
        return store
    }

    private init(url text: String) throws(HistoryStoreError) {
        guard let url = URLComponents(string: text), url.scheme == "postgres" || url.scheme == "postgresql",
            let host = url.host, !host.isEmpty
        else {
            throw .unavailable("'\(text)' is not a postgres://user:password@host:port/database URL")
        }
        let database = String(url.path.drop { $0 == "/" })
        let username = url.user ?? "postgres"
        let requireTLS = url.queryItems?.first(where: { $0.name == "sslmode" })?.value == "require"
        var configuration = PostgresClient.Configuration(
            host: host, port: url.port ?? 5432, username: username, password: url.password,
            database: database.isEmpty ? nil : database,
            tls: requireTLS ? .require(.makeClientConfiguration()) : .disable)
        configuration.options.connectTimeout = .seconds(10)
        let directTLS: PostgresConnection.Configuration.TLS
        do {
            directTLS = requireTLS ? .require(try NIOSSLContext(configuration: .makeClientConfiguration())) : .disable
        } catch {
            throw .unavailable("TLS set-up for \(host): \(error)")
        }
        var direct = PostgresConnection.Configuration(
            host: host, port: url.port ?? 5432, username: username, password: url.password,
            database: database.isEmpty ? nil : database, tls: directTLS)
        direct.options.connectTimeout = TimeAmount.seconds(10)
        connectionConfiguration = direct
        pool = ClientPool(configuration: configuration)
        location = "postgres://\(username)@\(host):\(url.port ?? 5432)/\(database)"
    }

    /// How long a call waits for the server before it counts as unavailable.
    static let answerTimeout = Duration.seconds(10)

    /// Runs `body` with the pool's client. After a failure that was not the server's answer (the
    /// server went away, a connection could not be made) the pool is not trusted again: the next
    /// call first connects directly (failing fast while the server is down), then starts a new
    /// pool, whose connections are fresh. Every call ends within ``answerTimeout``.
    fileprivate func connected<T: Sendable>(_ body: @escaping @Sendable (PostgresClient) async throws -> T) async throws
        -> T
    {
        if pool.suspect {
            let connection = try await PostgresConnection.connect(
                configuration: connectionConfiguration, id: 0, logger: quietLogger())
            try? await connection.close()
            pool.renew()
        }
        let client = pool.client
        do {
            return try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask { try await body(client) }
                group.addTask {
                    try await Task.sleep(for: Self.answerTimeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else { throw NoAnswer() }
                return value
            }
        } catch let error as PSQLError where error.serverInfo != nil {
            throw error
        } catch {
            pool.suspect = true
            throw error
        }
    }

    private func migrate() async throws {
        let client = pool.client
        try await client.query(
            """
            CREATE TABLE IF NOT EXISTS schema_versions (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
            """)
        // One transaction-less step per version; each is idempotent (IF NOT EXISTS).
        try await client.query(
            """
            CREATE TABLE IF NOT EXISTS migrations (
                id TEXT PRIMARY KEY,
                vm TEXT NOT NULL,
                source TEXT NOT NULL,
                destination TEXT NOT NULL,
                status TEXT NOT NULL,
                policy TEXT NOT NULL,
                downtime_ms BIGINT,
                duration_s DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                record TEXT NOT NULL
            )
            """)
        for statement in [
            "CREATE INDEX IF NOT EXISTS migrations_by_time ON migrations(created_at DESC)",
            "CREATE INDEX IF NOT EXISTS migrations_by_vm ON migrations(vm, created_at DESC)",
            "CREATE INDEX IF NOT EXISTS migrations_by_source ON migrations(source, created_at DESC)",
            "CREATE INDEX IF NOT EXISTS migrations_by_destination ON migrations(destination, created_at DESC)",
            "CREATE INDEX IF NOT EXISTS migrations_by_status ON migrations(status, created_at DESC)",
            """
            CREATE UNIQUE INDEX IF NOT EXISTS one_unfinished_migration_per_vm ON migrations(vm)
                WHERE status NOT IN ('completed', 'failed', 'cancelled')
            """,
            "INSERT INTO schema_versions (version) VALUES (1) ON CONFLICT DO NOTHING",
            """
            CREATE TABLE IF NOT EXISTS cordons (
                host TEXT PRIMARY KEY, reason TEXT NOT NULL, since DOUBLE PRECISION NOT NULL, by_whom TEXT
            )
            """,
            "INSERT INTO schema_versions (version) VALUES (2) ON CONFLICT DO NOTHING",
            """
            CREATE TABLE IF NOT EXISTS drains (
                id TEXT PRIMARY KEY, host TEXT NOT NULL, status TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, record TEXT NOT NULL
            )
            """,
            "CREATE INDEX IF NOT EXISTS drains_by_time ON drains(created_at DESC)",
            "INSERT INTO schema_versions (version) VALUES (3) ON CONFLICT DO NOTHING",
        ] {
            try await client.query(PostgresQuery(unsafeSQL: statement))
        }
    }

    package func begin(_ record: MigrationRecord) async throws(HistoryStoreError) {
        let text = try encodeRecord(record)
        do {
            try await connected { client in
                try await client.query(
                    """
                    INSERT INTO migrations (id, vm, source, destination, status, policy, downtime_ms, duration_s,
                        created_at, updated_at, record)
                    VALUES (\(record.id), \(record.vm), \(record.source), \(record.destination), \(record.state.rawValue),
                        \(record.policy), \(record.downtimeMilliseconds.map { Int64(clamping: $0) }), \(record.durationSeconds),
                        \(record.createdAt.timeIntervalSince1970), \(record.updatedAt.timeIntervalSince1970), \(text))
                    """)
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            if let busy = try await unfinished().first(where: { $0.vm == record.vm }) {
                throw .vmBusy(vm: record.vm, migration: busy.id, state: busy.state)
            }
            throw .duplicateID(record.id)
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    package func save(_ record: MigrationRecord) async throws(HistoryStoreError) {
        let text = try encodeRecord(record)
        let found: Bool
        do {
            found = try await connected { client in
                let rows = try await client.query(
                    """
                    UPDATE migrations SET vm = \(record.vm), source = \(record.source), destination = \(record.destination),
                        status = \(record.state.rawValue), policy = \(record.policy),
                        downtime_ms = \(record.downtimeMilliseconds.map { Int64(clamping: $0) }),
                        duration_s = \(record.durationSeconds), created_at = \(record.createdAt.timeIntervalSince1970),
                        updated_at = \(record.updatedAt.timeIntervalSince1970), record = \(text)
                    WHERE id = \(record.id) RETURNING id
                    """)
                var found = false
                for try await _ in rows { found = true }
                return found
            }
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            let busy = try await unfinished().first { $0.vm == record.vm }
            throw .vmBusy(vm: record.vm, migration: busy?.id ?? "?", state: busy?.state ?? .unknown)
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
        if !found { throw .notFound(record.id) }
    }

    package func record(id: String) async throws(HistoryStoreError) -> MigrationRecord? {
        let texts = try await recordTexts(in: "migrations", id: id)
        let records = try texts.map { (text) throws(HistoryStoreError) in try decodeRecord(text) }
        if records.count > 1 { throw .ambiguous(id, records.map(\.id)) }
        return records.first
    }

    /// The stored JSON of the row of `table` (`migrations` or `drains`) whose id is `id`, else of
    /// the rows whose id starts with it (two at most: more than one is ambiguous to the caller).
    private func recordTexts(in table: StaticString, id: String) async throws(HistoryStoreError) -> [String] {
        let name = "\(table)"
        do {
            return try await connected { client in
                var texts: [String] = []
                var binds = PostgresBindings()
                binds.append(id)
                var rows = try await client.query(
                    PostgresQuery(unsafeSQL: "SELECT record FROM \(name) WHERE id = $1", binds: binds))
                for try await (text) in rows.decode(String.self) { texts.append(text) }
                if texts.isEmpty {
                    var prefix = PostgresBindings()
                    prefix.append(likePrefix(id))
                    rows = try await client.query(
                        PostgresQuery(
                            unsafeSQL: "SELECT record FROM \(name) WHERE id LIKE $1 ESCAPE '\\' LIMIT 2", binds: prefix)
                    )
                    for try await (text) in rows.decode(String.self) { texts.append(text) }
                }
                return texts
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    package func list(_ filter: HistoryFilter) async throws(HistoryStoreError) -> [MigrationSummary] {
        var conditions: [String] = []
        var binds = PostgresBindings()
        func placeholder() -> String { "$\(binds.count)" }
        if let vm = filter.vm {
            binds.append(vm)
            conditions.append("vm = \(placeholder())")
        }
        if let host = filter.host {
            binds.append(host)
            conditions.append("(source = \(placeholder()) OR destination = \(placeholder()))")
        }
        if let state = filter.state {
            binds.append(state.rawValue)
            conditions.append("status = \(placeholder())")
        }
        if let since = filter.since {
            binds.append(since.timeIntervalSince1970)
            conditions.append("created_at >= \(placeholder())")
        }
        binds.append(filter.limit)
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let query = PostgresQuery(
            unsafeSQL: """
                SELECT id, vm, source, destination, status, policy, downtime_ms, duration_s, created_at, updated_at
                FROM migrations \(whereClause) ORDER BY created_at DESC, id DESC LIMIT \(placeholder())
                """, binds: binds)
        let summaries: [MigrationSummary]
        do {
            summaries = try await connected { client in
                var summaries: [MigrationSummary] = []
                let rows = try await client.query(query)
                for try await (id, vm, source, destination, status, policy, downtime, duration, created, updated)
                    in rows.decode(
                        (String, String, String, String, String, String, Int64?, Double, Double, Double).self)
                {
                    summaries.append(
                        MigrationSummary(
                            id: id, vm: vm, source: source, destination: destination,
                            state: MigrationState(rawValue: status) ?? .unknown, policy: policy,
                            downtimeMilliseconds: downtime.map { UInt64(max(0, $0)) }, durationSeconds: duration,
                            createdAt: Date(timeIntervalSince1970: created),
                            updatedAt: Date(timeIntervalSince1970: updated)
                        ))
                }
                return summaries
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
        return summaries
    }

    package func unfinished() async throws(HistoryStoreError) -> [MigrationRecord] {
        let texts: [String]
        do {
            texts = try await connected { client in
                var texts: [String] = []
                let rows = try await client.query(
                    """
                    SELECT record FROM migrations WHERE status NOT IN ('completed', 'failed', 'cancelled') ORDER BY created_at
                    """)
                for try await (text) in rows.decode(String.self) { texts.append(text) }
                return texts
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
        return try texts.map { (text) throws(HistoryStoreError) in try decodeRecord(text) }
    }
}

extension PostgresHistoryStore {
    package func cordon(_ cordon: HostCordon) async throws(HistoryStoreError) -> (HostCordon, created: Bool) {
        do {
            return try await connected { client in
                let rows = try await client.query(
                    """
                    INSERT INTO cordons (host, reason, since, by_whom)
                    VALUES (\(cordon.host), \(cordon.reason), \(cordon.since.timeIntervalSince1970), \(cordon.by))
                    ON CONFLICT (host) DO NOTHING RETURNING host
                    """)
                var created = false
                for try await _ in rows { created = true }
                return (try await Self.cordon(of: cordon.host, client) ?? cordon, created)
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    package func uncordon(host: String) async throws(HistoryStoreError) -> HostCordon? {
        do {
            return try await connected { client in
                try await Self.cordons(
                    client.query("DELETE FROM cordons WHERE host = \(host) RETURNING host, reason, since, by_whom")
                ).first
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    package func cordons() async throws(HistoryStoreError) -> [HostCordon] {
        do {
            return try await connected { client in
                try await Self.cordons(
                    client.query("SELECT host, reason, since, by_whom FROM cordons ORDER BY host"))
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    private static func cordon(of host: String, _ client: PostgresClient) async throws -> HostCordon? {
        try await cordons(client.query("SELECT host, reason, since, by_whom FROM cordons WHERE host = \(host)")).first
    }

    /// The cordons of rows of (host, reason, since, by_whom).
    private static func cordons(_ rows: PostgresRowSequence) async throws -> [HostCordon] {
        var cordons: [HostCordon] = []
        for try await (host, reason, since, by) in rows.decode((String, String, Double, String?).self) {
            cordons.append(HostCordon(host: host, reason: reason, since: Date(timeIntervalSince1970: since), by: by))
        }
        return cordons
    }
}

/// The store's connection pool, replaced by a new one after the server went away (a pool whose
/// connections all failed stops trying for a while: its circuit breaker).
private final class ClientPool: Sendable {
    private let configuration: PostgresClient.Configuration
    private let state: Mutex<(client: PostgresClient, runner: Task<Void, Never>, suspect: Bool)>

    init(configuration: PostgresClient.Configuration) {
        self.configuration = configuration
        state = Mutex(Self.start(configuration))
    }

    private static func start(_ configuration: PostgresClient.Configuration) -> (
        client: PostgresClient, runner: Task<Void, Never>, suspect: Bool
    ) {
        let client = PostgresClient(configuration: configuration, backgroundLogger: quietLogger())
        return (client, Task { await client.run() }, false)
    }

    deinit {
        state.withLock { $0.runner.cancel() }
    }

    var client: PostgresClient { state.withLock { $0.client } }

    /// A call failed without the server's answer: the pool is not trusted until ``renew()``.
    var suspect: Bool {
        get { state.withLock { $0.suspect } }
        set { state.withLock { $0.suspect = newValue } }
    }

    /// Replaces the pool with a new one (the old one's connections are closed).
    func renew() {
        let fresh = Self.start(configuration)
        let old = state.withLock { state in
            let old = state.runner
            state = fresh
            return old
        }
        old.cancel()
    }
}

/// The server did not answer within ``PostgresHistoryStore/answerTimeout``.
private struct NoAnswer: Error, CustomDebugStringConvertible {
    var debugDescription: String { "no answer within \(PostgresHistoryStore.answerTimeout)" }
}

/// postgres-nio logs connection attempts at info level; the store reports failures itself.
private func quietLogger() -> Logger {
    var logger = Logger(label: "vgpu-migrate.postgres")
    logger.logLevel = .error
    return logger
}

extension PostgresHistoryStore {
    package func saveDrain(_ drain: DrainRecord) async throws(HistoryStoreError) {
        let text = try encodeDrain(drain)
        do {
            try await connected { client in
                try await client.query(
                    """
                    INSERT INTO drains (id, host, status, created_at, updated_at, record)
                    VALUES (\(drain.id), \(drain.host), \(drain.state.rawValue), \(drain.createdAt.timeIntervalSince1970),
                        \(drain.updatedAt.timeIntervalSince1970), \(text))
                    ON CONFLICT (id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at,
                        record = excluded.record
                    """)
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
    }

    package func drain(id: String) async throws(HistoryStoreError) -> DrainRecord? {
        let texts = try await recordTexts(in: "drains", id: id)
        let drains = try texts.map { (text) throws(HistoryStoreError) in try decodeDrain(text) }
        if drains.count > 1 { throw .ambiguous(id, drains.map(\.id)) }
        return drains.first
    }

    package func drains(limit: Int) async throws(HistoryStoreError) -> [DrainRecord] {
        let texts: [String]
        do {
            texts = try await connected { client in
                var texts: [String] = []
                let rows = try await client.query(
                    "SELECT record FROM drains ORDER BY created_at DESC, id DESC LIMIT \(limit)")
                for try await (text) in rows.decode(String.self) { texts.append(text) }
                return texts
            }
        } catch {
            throw .unavailable("\(location): \(String(reflecting: error))")
        }
        return try texts.map { (text) throws(HistoryStoreError) in try decodeDrain(text) }
    }
}
