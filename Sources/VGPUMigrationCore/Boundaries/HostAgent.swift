/// A host's vGPU agent as the coordinator uses it: `vgpu-agent` over HTTPS in production
/// (`AgentClient`); tests use the real agent on loopback.
package protocol HostAgent: Sendable {
    /// Reserves vGPUs; the same idempotency key again returns the same reservation.
    func reserve(_ request: ReservationRequest) async throws -> Reservation
    /// Every reservation the agent knows.
    func reservations() async throws -> [Reservation]
    /// Releases a reservation: its devices are removed.
    func release(_ id: String) async throws -> Reservation
    /// The migration succeeded: the devices stay, the lease ends.
    func commit(_ id: String) async throws -> Reservation
    /// The VM using a committed reservation's devices left the host: the devices are removed.
    func retire(_ id: String) async throws -> Reservation
}
