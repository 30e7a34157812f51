import Foundation
import VGPUMigrationCore

/// Puts the records the local journal kept (while the history store could not be written) back
/// into the store. A record the store already shows ended (another coordinator's `reconcile`
/// settled it meanwhile) keeps the store's outcome; the journal's copy is dropped and said so.
package enum JournalReplay {
    /// What became of one journaled record.
    package struct Outcome: Sendable, Hashable {
        package var migration: String
        /// The record is in the store now (written, or the store's own outcome kept).
        package var settled: Bool
        package var message: String
    }

    /// Replays every record of `journal` into `store`; stops at the first the store does not
    /// take (it is still down: the rest wait for the next try).
    package static func replay(_ journal: any RecordJournal, into store: any HistoryStore, at now: Date) async
        -> [Outcome]
    {
        do {
            return await replay(try journal.records(), from: journal, into: store, at: now)
        } catch {
            return [Outcome(migration: "-", settled: false, message: "cannot read the local journal: \(error)")]
        }
    }

    /// Replays `kept`, read from `journal`, into `store`.
    package static func replay(
        _ kept: [MigrationRecord], from journal: any RecordJournal, into store: any HistoryStore, at now: Date
    ) async -> [Outcome] {
        var outcomes: [Outcome] = []
        for record in kept {
            let stored: MigrationRecord?
            do {
                stored = try await store.record(id: record.id)
            } catch {
                outcomes.append(Outcome(migration: record.id, settled: false, message: "the history store: \(error)"))
                return outcomes
            }
            guard let stored else {
                outcomes.append(
                    Outcome(
                        migration: record.id, settled: false,
                        message:
                            "the history store has no migration \(record.id); its record stays in \(journal.location)"))
                continue
            }
            if stored.state.isTerminal && stored != record {
                try? journal.forget(record.id)
                outcomes.append(
                    Outcome(
                        migration: record.id, settled: true,
                        message:
                            "the history already shows it \(stored.state.rawValue); the journal's copy "
                            + "(\(record.state.rawValue)) was dropped"))
                continue
            }
            var replayed = record
            replayed.note("replayed from the local journal \(journal.location) into the history store", at: now)
            do {
                try await store.save(replayed)
            } catch {
                outcomes.append(Outcome(migration: record.id, settled: false, message: "the history store: \(error)"))
                return outcomes
            }
            do {
                try journal.forget(record.id)
            } catch {
                outcomes.append(
                    Outcome(
                        migration: record.id, settled: true,
                        message: "written to the history, but cannot be removed from the journal: \(error)"))
                continue
            }
            outcomes.append(
                Outcome(
                    migration: record.id, settled: true,
                    message: "written from the local journal into the history (\(replayed.state.rawValue))"))
        }
        return outcomes
    }
}
