import Foundation
import Synchronization
import VGPUMigrationCore

/// A history store in memory, for engine tests. It follows the SQLite and PostgreSQL stores (the
/// storage suite runs it with them): one unfinished migration per VM, ids unique, `save` of an
/// unknown id refused, an id or a unique prefix found, `list` newest first and filtered,
/// `unfinished` oldest first.
package final class InMemoryHistoryStore: HistoryStore {
    private let records = Mutex<[String: MigrationRecord]>([:])
    private let cordoned = Mutex<[String: HostCordon]>([:])
    private let drainRecords = Mutex<[String: DrainRecord]>([:])

    package init() {}

    package func begin(_ record: MigrationRecord) async throws(HistoryStoreError) {
        try records.withLock { (records) throws(HistoryStoreError) in
            if let busy = records.values.first(where: { $0.vm == record.vm && !$0.state.isTerminal }),
                !record.state.isTerminal
            {
                throw .vmBusy(vm: record.vm, migration: busy.id, state: busy.state)
            }
            guard records[record.id] == nil else { throw .duplicateID(record.id) }
            records[record.id] = record
        }
    }

    package func save(_ record: MigrationRecord) async throws(HistoryStoreError) {
        try records.withLock { (records) throws(HistoryStoreError) in
            guard records[record.id] != nil else { throw .notFound(record.id) }
            if !record.state.isTerminal,
                let busy = records.values.first(where: {
                    $0.vm == record.vm && $0.id != record.id && !$0.state.isTerminal
                })
            {
                throw .vmBusy(vm: record.vm, migration: busy.id, state: busy.state)
            }
            records[record.id] = record
        }
    }

    package func record(id: String) async throws(HistoryStoreError) -> MigrationRecord? {
        try records.withLock { (records) throws(HistoryStoreError) in try Self.find(id, in: records) }
    }

    package func list(_ filter: HistoryFilter) async throws(HistoryStoreError) -> [MigrationSummary] {
        records.withLock { records in
            records.values.filter { record in
                (filter.vm == nil || record.vm == filter.vm)
                    && (filter.host == nil || record.source == filter.host || record.destination == filter.host)
                    && (filter.state == nil || record.state == filter.state)
                    && (filter.since.map { record.createdAt >= $0 } ?? true)
            }
            .sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
            .prefix(filter.limit).map(MigrationSummary.init)
        }
    }

    package func unfinished() async throws(HistoryStoreError) -> [MigrationRecord] {
        records.withLock { records in
            records.values.filter { !$0.state.isTerminal }.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
        }
    }

    package func cordon(_ cordon: HostCordon) async throws(HistoryStoreError) -> (HostCordon, created: Bool) {
        cordoned.withLock { cordons in
            if let existing = cordons[cordon.host] { return (existing, false) }
            cordons[cordon.host] = cordon
            return (cordon, true)
        }
    }

    package func uncordon(host: String) async throws(HistoryStoreError) -> HostCordon? {
        cordoned.withLock { $0.removeValue(forKey: host) }
    }

    package func cordons() async throws(HistoryStoreError) -> [HostCordon] {
        cordoned.withLock { $0.values.sorted { $0.host < $1.host } }
    }

    package func saveDrain(_ drain: DrainRecord) async throws(HistoryStoreError) {
        drainRecords.withLock { $0[drain.id] = drain }
    }

    package func drain(id: String) async throws(HistoryStoreError) -> DrainRecord? {
        try drainRecords.withLock { (drains) throws(HistoryStoreError) in try Self.find(id, in: drains) }
    }

    /// The value with key `id`, or the only one whose key starts with it, as the stores look ids up.
    private static func find<Value>(_ id: String, in values: [String: Value]) throws(HistoryStoreError) -> Value? {
        if let exact = values[id] { return exact }
        let matches = values.filter { $0.key.hasPrefix(id) }.sorted { $0.key < $1.key }
        if matches.count > 1 { throw .ambiguous(id, Array(matches.prefix(2).map(\.key))) }
        return matches.first?.value
    }

    package func drains(limit: Int) async throws(HistoryStoreError) -> [DrainRecord] {
        drainRecords.withLock { drains in
            Array(drains.values.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }.prefix(limit))
        }
    }
}

/// A history store that stops answering on demand, as a PostgreSQL server that is restarting or
/// a SQLite file on a full disk does: while `failing`, every call fails with
/// ``HistoryStoreError/unavailable(_:)``; otherwise calls go to `store`.
package final class FlakyHistoryStore: HistoryStore {
    package let store: any HistoryStore
    private let state = Mutex((failing: false, refused: 0))

    package init(_ store: any HistoryStore) {
        self.store = store
    }

    package var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    /// How many calls were refused.
    package var refused: Int { state.withLock { $0.refused } }

    private func answer() throws(HistoryStoreError) {
        let failing = state.withLock { state in
            if state.failing { state.refused += 1 }
            return state.failing
        }
        if failing { throw .unavailable("connection refused (the server is not running)") }
    }

    package func begin(_ record: MigrationRecord) async throws(HistoryStoreError) {
        try answer()
        try await store.begin(record)
    }

    package func save(_ record: MigrationRecord) async throws(HistoryStoreError) {
        try answer()
        try await store.save(record)
    }

    package func record(id: String) async throws(HistoryStoreError) -> MigrationRecord? {
        try answer()
        return try await store.record(id: id)
    }

    package func list(_ filter: HistoryFilter) async throws(HistoryStoreError) -> [MigrationSummary] {
        try answer()
        return try await store.list(filter)
    }

    package func unfinished() async throws(HistoryStoreError) -> [MigrationRecord] {
        try answer()
        return try await store.unfinished()
    }

    package func cordon(_ cordon: HostCordon) async throws(HistoryStoreError) -> (HostCordon, created: Bool) {
        try answer()
        return try await store.cordon(cordon)
    }

    package func uncordon(host: String) async throws(HistoryStoreError) -> HostCordon? {
        try answer()
        return try await store.uncordon(host: host)
    }

    package func cordons() async throws(HistoryStoreError) -> [HostCordon] {
        try answer()
        return try await store.cordons()
    }

    package func saveDrain(_ drain: DrainRecord) async throws(HistoryStoreError) {
        try answer()
        try await store.saveDrain(drain)
    }

    package func drain(id: String) async throws(HistoryStoreError) -> DrainRecord? {
        try answer()
        return try await store.drain(id: id)
    }

    package func drains(limit: Int) async throws(HistoryStoreError) -> [DrainRecord] {
        try answer()
        return try await store.drains(limit: limit)
    }
}

/// The local journal in memory.
package final class InMemoryRecordJournal: RecordJournal {
    private let kept = Mutex<[String: MigrationRecord]>([:])

    package init() {}

    package var location: String { "memory" }

    package func keep(_ record: MigrationRecord) throws {
        kept.withLock { $0[record.id] = record }
    }

    package func forget(_ id: String) throws {
        _ = kept.withLock { $0.removeValue(forKey: id) }
    }

    package func records() throws -> [MigrationRecord] {
        kept.withLock { $0.values.sorted { $0.id < $1.id } }
    }
}
