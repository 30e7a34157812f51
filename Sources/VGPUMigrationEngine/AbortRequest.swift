import Synchronization

/// The operator's request to abort a running migration (Ctrl-C on the command line; a call to
/// a service). An abort ends the migration `cancelled`, the VM on the source and the
/// destination reservation released.
package final class AbortRequest: Sendable {
    private struct State {
        var requested = false
        var handlers: [@Sendable () -> Void] = []
    }

    private let state = Mutex(State())

    package init() {}

    /// Whether the operator asked to abort.
    package var isRequested: Bool { state.withLock { $0.requested } }

    /// Asks to abort.
    package func request() {
        let handlers = state.withLock { state in
            state.requested = true
            return state.handlers
        }
        for handler in handlers { handler() }
    }

    /// Calls `handler` when the operator asks to abort (at once if they already did).
    package func whenRequested(_ handler: @escaping @Sendable () -> Void) {
        let already = state.withLock { state in
            state.handlers.append(handler)
            return state.requested
        }
        if already { handler() }
    }
}
