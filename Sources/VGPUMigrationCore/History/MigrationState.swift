/// Where a migration is. Each change is a recorded transition.
///
/// `requested → checking → reserving → migrating → completing → completed`, with the off-ramps
/// `failed` (rolled back: reservation released, VM still on the source), `cancelled` (operator
/// abort) and `unknown` (outcome not known, e.g. the coordinator died; settled by reconciling).
package enum MigrationState: String, Sendable, Hashable, Codable, CaseIterable {
    case requested, checking, reserving, migrating, completing, completed, failed, cancelled, unknown

    /// No transition leaves a terminal state.
    package var isTerminal: Bool { self == .completed || self == .failed || self == .cancelled }

    /// The transition table.
    package static let allowed: [MigrationState: Set<MigrationState>] = [
        .requested: [.checking, .failed, .cancelled, .unknown],
        .checking: [.reserving, .failed, .cancelled, .unknown],
        .reserving: [.migrating, .failed, .cancelled, .unknown],
        .migrating: [.completing, .failed, .cancelled, .unknown],
        .completing: [.completed, .failed, .unknown],
        // Reconciliation settles an unknown outcome, or finds the job still running.
        .unknown: [.migrating, .completing, .completed, .failed, .cancelled],
        .completed: [],
        .failed: [],
        .cancelled: [],
    ]

    package func canMove(to next: MigrationState) -> Bool {
        Self.allowed[self, default: []].contains(next)
    }
}

/// A refused state change.
package struct IllegalTransition: Error, Sendable, Hashable, CustomStringConvertible {
    package var from: MigrationState
    package var to: MigrationState

    package var description: String {
        from.isTerminal
            ? "the migration already ended (\(from.rawValue)); it cannot become \(to.rawValue)"
            : "a migration cannot go from \(from.rawValue) to \(to.rawValue)"
    }
}
