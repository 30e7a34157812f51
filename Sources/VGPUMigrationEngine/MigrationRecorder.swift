import Foundation
import Logging
import VGPUMigrationCore

/// Writes one migration's record: to the history store, and while the store cannot be written
/// (PostgreSQL restarting, a full disk, a locked or read-only SQLite file) to the local journal,
/// until the store takes it again. It never throws: a migration whose job runs goes on whatever
/// the store does (see docs/migrate.md, "When the history store fails").
///
/// Writes happen one at a time, newest record last. ``update(_:)`` never waits on the store (the
/// monitor's samples); ``persist(_:)`` returns once the record is in the store or the journal
/// (an intent before the side effect it announces, a state transition).
package actor MigrationRecorder {
    /// Where a write went.
    package enum Written: Sendable, Hashable {
        case store
        /// The store failed; the record is in the local journal.
        case journal
        /// Neither the store nor the journal took it.
        case nowhere
    }

    private let store: any HistoryStore
    private let journal: (any RecordJournal)?
    private let clock: any MigrationClock
    private let events: MigrationEventSink
    private let logger: Logger
    /// After a failed write the store is left alone this long: writes go to the journal only.
    private let retryInterval: Duration

    private var latest: MigrationRecord?
    private var version = 0
    private var writtenVersion = 0
    private var lastWritten = Written.store
    /// Notes about the record the recorder adds to every copy it writes.
    private var notes: [RecordNote] = []
    private var failingSince: Date?
    private var retryAt: Date?
    private var inJournal = false
    private var toldNowhere = false
    private var writing = false
    private var waiting: [CheckedContinuation<Void, Never>] = []
    private let signals: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation

    package init(
        store: any HistoryStore, journal: (any RecordJournal)?, clock: any MigrationClock = SystemClock(),
        events: MigrationEventSink, logger: Logger, retryInterval: Duration = .seconds(5)
    ) {
        self.store = store
        self.journal = journal
        self.clock = clock
        self.events = events
        self.logger = logger
        self.retryInterval = retryInterval
        (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Takes `record` as the newest; ``writeInBackground()`` saves it soon.
    package func update(_ record: MigrationRecord) {
        latest = record
        version += 1
        signal.yield()
    }

    /// Saves `record` now: in the store, or in the journal while the store fails.
    @discardableResult
    package func persist(_ record: MigrationRecord) async -> Written {
        update(record)
        return await flush(retryingStore: false)
    }

    /// Saves what ``update(_:)`` was given, until ``close()``.
    package func writeInBackground() async {
        for await _ in signals { await flush(retryingStore: false) }
    }

    /// Ends ``writeInBackground()``.
    package func close() {
        signal.finish()
    }

    /// The record as the run ends: tried in the store for up to `patience` (every
    /// `retryInterval`), then left in the journal. Returns the record as written, with the
    /// recorder's notes, and where it went.
    package func finish(_ record: MigrationRecord, patience: Duration) async -> (MigrationRecord, Written) {
        if latest != record { update(record) }
        let deadline = clock.now.addingTimeInterval(patience.seconds)
        var written = await flush(retryingStore: false)
        while written != .store && clock.now < deadline {
            // Until the store is due to be tried again, and no later than the deadline.
            let until = min(retryAt ?? clock.now, deadline)
            if until > clock.now { try? await clock.sleep(for: .seconds(until.timeIntervalSince(clock.now))) }
            written = await flush(retryingStore: true)
        }
        return (withNotes(latest ?? record), written)
    }

    // MARK: Writing

    @discardableResult
    private func flush(retryingStore: Bool) async -> Written {
        await acquire()
        defer { release() }
        guard let record = latest else { return lastWritten }
        if writtenVersion == version && !(retryingStore && lastWritten != .store) { return lastWritten }
        let current = version
        if !retryingStore, let retryAt, clock.now < retryAt {
            return keep(withNotes(record), version: current)
        }
        do {
            try await store.save(withNotes(record))
        } catch {
            return storeFailed(error, record: record, version: current)
        }
        if let since = failingSince {
            failingSince = nil
            retryAt = nil
            let seconds = Int(clock.now.timeIntervalSince(since).rounded())
            notes.append(
                RecordNote(time: clock.now, text: "the history store took the record again after \(seconds) s"))
            logger.notice("the history store takes the record again", metadata: ["after_s": "\(seconds)"])
            events.yield(.historyStoreBack(migration: record.id))
            // The note goes in with the next write; this one is made now.
            do {
                try await store.save(withNotes(record))
            } catch {
                return storeFailed(error, record: record, version: current)
            }
        }
        if inJournal, let journal {
            do {
                try journal.forget(record.id)
                inJournal = false
            } catch {
                logger.warning("cannot remove the record from the journal", metadata: ["error": "\(error)"])
            }
        }
        writtenVersion = current
        lastWritten = .store
        return .store
    }

    private func storeFailed(_ error: any Error, record: MigrationRecord, version current: Int) -> Written {
        retryAt = clock.now.addingTimeInterval(retryInterval.seconds)
        if failingSince == nil {
            failingSince = clock.now
            let place = journal.map { "the local journal \($0.location)" } ?? "no journal (none is configured)"
            notes.append(
                RecordNote(
                    time: clock.now,
                    text: "the history store could not be written (\(error)); the record was kept in \(place)"))
            logger.warning(
                "the history store cannot be written; keeping the record in the journal",
                metadata: ["error": "\(error)", "journal": "\(journal?.location ?? "-")"])
            events.yield(
                .historyStoreUnavailable(migration: record.id, message: "\(error)", journal: journal?.location))
        }
        return keep(withNotes(record), version: current)
    }

    private func keep(_ record: MigrationRecord, version current: Int) -> Written {
        guard let journal else { return nowhere(record, "no journal is configured") }
        do {
            try journal.keep(record)
        } catch {
            return nowhere(record, "\(error)")
        }
        inJournal = true
        writtenVersion = current
        lastWritten = .journal
        return .journal
    }

    private func nowhere(_ record: MigrationRecord, _ why: String) -> Written {
        if !toldNowhere {
            toldNowhere = true
            logger.error("the record cannot be kept anywhere", metadata: ["error": "\(why)"])
            events.yield(
                .notice(
                    migration: record.id,
                    "the record cannot be kept in the local journal either (\(why)); it lives in memory until the store answers"
                ))
        }
        lastWritten = .nowhere
        return .nowhere
    }

    private func withNotes(_ record: MigrationRecord) -> MigrationRecord {
        var copy = record
        let known = Set(copy.notes ?? [])
        for note in notes where !known.contains(note) { copy.note(note.text, at: note.time) }
        return copy
    }

    private func acquire() async {
        if !writing {
            writing = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    private func release() {
        if waiting.isEmpty {
            writing = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}

extension MigrationRecord {
    /// Records `intent` and saves the record before the action it announces is taken: the one
    /// way the engine writes ahead of a side effect.
    @discardableResult
    mutating func intend(_ intent: Intent, recorder: MigrationRecorder) async -> MigrationRecorder.Written {
        intents.append(intent)
        return await recorder.persist(self)
    }
}

extension Duration {
    /// The duration in seconds.
    package var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }
}
