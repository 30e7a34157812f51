import VGPUMigrationCore

/// What the engine tells whoever drives it, as it happens: the command line renders these as
/// lines, a service could send them on. Every event names its migration.
package enum MigrationRunEvent: Sendable, Hashable {
    /// A migration was recorded and begins.
    case began(migration: String, vm: String, source: String, destination: String, policy: String)
    /// The migration entered `state`.
    case transition(migration: String, state: MigrationState, reason: String)
    /// A job sample, with the downtime limit in force.
    case progress(migration: String, sample: JobSample, downtimeLimitMilliseconds: Int)
    /// The monitor set a new downtime limit.
    case downtimeLimit(migration: String, milliseconds: Int, reason: String)
    /// The monitor aborts the job (policy timeout, the operator).
    case aborting(migration: String, reason: String)
    /// A coordinator-less job is still running and is watched; `policy` nil when the record's
    /// policy is not found (no new limits).
    case watching(migration: String, policy: String, policyFound: Bool)
    /// A record younger than the stale age, left to the coordinator that drives it.
    case leftToCoordinator(migration: String, state: MigrationState, secondsSinceUpdate: Int)
    /// `reconcile` settled a record (or left it `unknown`).
    case settled(migration: String, state: MigrationState, reason: String)
    /// A host did not answer; the engine goes on without it where it can.
    case hostUnreachable(host: String, message: String)
    /// The history store could not be written; the record is kept in the local journal at
    /// `journal` (nil: it could not be kept there either).
    case historyStoreUnavailable(migration: String, message: String, journal: String?)
    /// The history store takes the record again.
    case historyStoreBack(migration: String)
    /// Anything else the operator should read.
    case notice(migration: String, String)
    /// The run stops here for good (crash tests).
    case paused(migration: String, point: String)
}

/// Where the engine sends its events: a stream's continuation (a command line renders them, a
/// service sends them on), or a function (tests collect them).
package struct MigrationEventSink: Sendable {
    private let send: @Sendable (MigrationRunEvent) -> Void

    package init(_ send: @escaping @Sendable (MigrationRunEvent) -> Void) {
        self.send = send
    }

    /// Into a stream's continuation.
    package init(_ continuation: AsyncStream<MigrationRunEvent>.Continuation) {
        send = { continuation.yield($0) }
    }

    package func yield(_ event: MigrationRunEvent) {
        send(event)
    }

    /// A sink nobody reads.
    package static let discarded = MigrationEventSink { _ in }
}

extension MigrationRunEvent {
    /// A stream of events and its continuation; every event is kept until read.
    package static func stream() -> (AsyncStream<MigrationRunEvent>, AsyncStream<MigrationRunEvent>.Continuation) {
        AsyncStream.makeStream(of: MigrationRunEvent.self, bufferingPolicy: .unbounded)
    }
}
