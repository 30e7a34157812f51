import struct Foundation.Date

/// Which migrations `history` lists.
package struct HistoryFilter: Sendable, Hashable {
    package var vm: String?
    /// Source or destination.
    package var host: String?
    package var state: MigrationState?
    /// Started at or after.
    package var since: Date?
    package var limit: Int

    package init(
        vm: String? = nil, host: String? = nil, state: MigrationState? = nil, since: Date? = nil, limit: Int = 50
    ) {
        self.vm = vm
        self.host = host
        self.state = state
        self.since = since
        self.limit = limit
    }
}

/// One line of `history`.
package struct MigrationSummary: Sendable, Hashable, Codable {
    package var id: String
    package var vm: String
    package var source: String
    package var destination: String
    package var state: MigrationState
    package var policy: String
    package var downtimeMilliseconds: UInt64?
    package var durationSeconds: Double
    package var createdAt: Date
    package var updatedAt: Date

    package init(_ record: MigrationRecord) {
        id = record.id
        vm = record.vm
        source = record.source
        destination = record.destination
        state = record.state
        policy = record.policy
        downtimeMilliseconds = record.downtimeMilliseconds
        durationSeconds = record.durationSeconds
        createdAt = record.createdAt
        updatedAt = record.updatedAt
    }

    package init(
        id: String, vm: String, source: String, destination: String, state: MigrationState, policy: String,
        downtimeMilliseconds: UInt64?, durationSeconds: Double, createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.vm = vm
        self.source = source
        self.destination = destination
        self.state = state
        self.policy = policy
        self.downtimeMilliseconds = downtimeMilliseconds
        self.durationSeconds = durationSeconds
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, vm, source, destination
        case state = "status"
        case policy
        case downtimeMilliseconds = "downtime_ms"
        case durationSeconds = "duration_s"
        case createdAt = "started"
        case updatedAt = "updated"
    }
}

/// A host marked as no destination (host maintenance): no migration goes there until it is
/// uncordoned. Kept in the history store, so every coordinator sharing it sees it.
package struct HostCordon: Sendable, Hashable, Codable {
    /// The host's inventory name.
    package var host: String
    /// Why, in the operator's words.
    package var reason: String
    package var since: Date
    /// Who cordoned it (the user and machine), when known.
    package var by: String?

    package init(host: String, reason: String, since: Date, by: String?) {
        self.host = host
        self.reason = reason
        self.since = since
        self.by = by
    }
}

/// Where migration records live: a SQLite file by default, PostgreSQL for several coordinators.
///
/// A VM has at most one unfinished migration in a store, whichever coordinator asks: the store
/// itself refuses the second (``HistoryStoreError/vmBusy(vm:migration:state:)``).
package protocol HistoryStore: Sendable {
    /// Adds a new migration record.
    func begin(_ record: MigrationRecord) async throws(HistoryStoreError)
    /// Saves the record's current state (after a transition, a step, a sample).
    func save(_ record: MigrationRecord) async throws(HistoryStoreError)
    /// The record with `id`, or the only one whose id starts with it; nil when none.
    func record(id: String) async throws(HistoryStoreError) -> MigrationRecord?
    /// Newest first.
    func list(_ filter: HistoryFilter) async throws(HistoryStoreError) -> [MigrationSummary]
    /// Every record not in a terminal state, oldest first (for reconciliation).
    func unfinished() async throws(HistoryStoreError) -> [MigrationRecord]
    /// Cordons a host; a host already cordoned keeps its cordon. Returns the host's cordon and
    /// whether this call made it.
    func cordon(_ cordon: HostCordon) async throws(HistoryStoreError) -> (HostCordon, created: Bool)
    /// Lifts a host's cordon; returns it, or nil when the host was not cordoned.
    func uncordon(host: String) async throws(HistoryStoreError) -> HostCordon?
    /// Every cordoned host, by name.
    func cordons() async throws(HistoryStoreError) -> [HostCordon]
    /// Adds a drain, or saves its current state.
    func saveDrain(_ drain: DrainRecord) async throws(HistoryStoreError)
    /// The drain with `id`, or the only one whose id starts with it; nil when none.
    func drain(id: String) async throws(HistoryStoreError) -> DrainRecord?
    /// The newest `limit` drains, newest first.
    func drains(limit: Int) async throws(HistoryStoreError) -> [DrainRecord]
}

/// Why the history store refused or failed.
package enum HistoryStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The VM already has an unfinished migration.
    case vmBusy(vm: String, migration: String, state: MigrationState)
    case duplicateID(String)
    case notFound(String)
    /// More than one record starts with the given id.
    case ambiguous(String, [String])
    case unavailable(String)
    case corrupt(String)

    package var description: String {
        switch self {
        case .vmBusy(let vm, let migration, let state):
            "VM \(vm) is already being migrated: migration \(migration) is \(state.rawValue)"
        case .duplicateID(let id): "a migration with id \(id) already exists"
        case .notFound(let id): "no migration \(id)"
        case .ambiguous(let prefix, let ids): "'\(prefix)' matches several migrations: \(ids.joined(separator: ", "))"
        case .unavailable(let message): "the history store is not available: \(message)"
        case .corrupt(let message): "the history store holds a damaged record: \(message)"
        }
    }
}

/// Records kept on this machine while the history store cannot be written, until they are
/// written there: a directory of files in production, memory in unit tests. One journal serves
/// one history store.
package protocol RecordJournal: Sendable {
    /// Where the journal keeps its records, for messages.
    var location: String { get }
    /// Keeps `record`, replacing an earlier copy of it; durable when it returns.
    func keep(_ record: MigrationRecord) throws
    /// Forgets the record `id` (it is in the store now).
    func forget(_ id: String) throws
    /// Every record kept.
    func records() throws -> [MigrationRecord]
}
