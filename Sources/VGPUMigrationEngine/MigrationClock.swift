import Foundation
import Logging

/// The time the engine reads and waits on: the system's in production, a virtual one in tests
/// (the monitor and the downtime controller then run through minutes of a migration at once).
package protocol MigrationClock: Sendable {
    /// Now, as records and the downtime controller count time.
    var now: Date { get }
    /// Waits `duration`; throws when the task is cancelled.
    func sleep(for duration: Duration) async throws
}

/// The system's wall clock and `Task.sleep`.
package struct SystemClock: MigrationClock {
    package init() {}
    package var now: Date { Date() }
    package func sleep(for duration: Duration) async throws { try await Task.sleep(for: duration) }
}

extension Logger {
    /// A logger that drops everything: the engine's default when its caller gives none.
    package static let silent = Logger(label: "vgpu-migrate.engine") { _ in SwiftLogNoOpLogHandler() }
}
