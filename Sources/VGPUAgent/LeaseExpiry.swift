import ServiceLifecycle
import VGPUHost
import VGPUMigrationCore

/// The agent's periodic pass over its reservations, as a service of the application: leases
/// that ended are released, `releasing` reservations whose devices are free now are finished. It
/// starts and stops with the server (a graceful shutdown ends it after its current pass).
struct LeaseExpiryService: Service {
    var book: ReservationBook
    var interval: Duration
    /// Told of every reservation a pass changed.
    var changed: @Sendable (Reservation) -> Void

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                for reservation in await book.expireDue() { changed(reservation) }
            }
        }
    }
}
