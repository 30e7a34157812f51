import Foundation
import Synchronization
import VGPUMigrationEngine

/// Time for tests that moves only when the code under test waits: `sleep(for:)` moves the clock
/// on by the duration at once, and everything that follows the clock (a ``FakeLibvirt``'s jobs)
/// moves with it before the sleeper goes on. The engine's monitor sleeps between samples, so a
/// migration of minutes runs through in the time its steps take to compute.
package final class VirtualClock: MigrationClock {
    private struct State {
        var now: Date
        var followers: [@Sendable (Date) async -> Void] = []
        var slept: Duration = .zero
    }

    private let state: Mutex<State>

    package init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        state = Mutex(State(now: start))
    }

    package var now: Date { state.withLock { $0.now } }

    /// How much time all sleeps together have moved the clock.
    package var slept: Duration { state.withLock { $0.slept } }

    package func sleep(for duration: Duration) async throws {
        try Task.checkCancellation()
        let (now, followers) = state.withLock { state in
            state.now = state.now.addingTimeInterval(duration.seconds)
            state.slept += duration
            return (state.now, state.followers)
        }
        for follower in followers { await follower(now) }
        await Task.yield()
    }

    /// Calls `follower` with the new time whenever the clock moves.
    package func whenMoved(_ follower: @escaping @Sendable (Date) async -> Void) {
        state.withLock { $0.followers.append(follower) }
    }
}
