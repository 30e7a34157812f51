import Foundation
import VGPUHost
import VGPUMigrationCore

/// A host's vGPU agent in memory, for engine tests. It follows `vgpu-agent`'s reservation book
/// (VGPUHost's `ReservationBook`): the same idempotency key returns the same reservation (another
/// request under it is a conflict); a reservation takes free slots of its type or is refused for
/// capacity; release ends an active one (`releasing` while a process holds a device open) and
/// refuses a committed one; commit ends the lease of an active one; retire removes a committed
/// one's devices and releases an active one; ended ones come back unchanged.
package actor InMemoryHostAgent: HostAgent {
    /// The vGPU type the host offers and how many it can hold.
    package let typeID: String
    package let slots: Int
    private var book: [Reservation] = []
    /// Devices that exist on the host now.
    package private(set) var devices: Set<String> = []
    /// Devices a process (the VM's QEMU) holds open.
    private var heldOpen: Set<String> = []
    private var answering = true
    private let clock: @Sendable () -> Date

    package init(typeID: String, slots: Int, clock: @escaping @Sendable () -> Date = { Date() }) {
        self.typeID = typeID
        self.slots = slots
        self.clock = clock
    }

    /// The agent stops answering (its process is gone) or answers again (restarted: its book
    /// and devices are as it left them, as the real agent's journal keeps them).
    package func setAnswering(_ answers: Bool) { answering = answers }

    /// A process holds `device` open (a VM runs on it), or lets it go.
    package func setHeldOpen(_ device: String, _ held: Bool) {
        if held { heldOpen.insert(device) } else { heldOpen.remove(device) }
    }

    /// A device made on the host before (an earlier migration's committed vGPU).
    package func adopt(_ reservation: Reservation) {
        book.append(reservation)
        for device in reservation.devices { devices.insert(device.id) }
    }

    package func reserve(_ request: ReservationRequest) async throws -> Reservation {
        try answer()
        if let problem = request.problem { throw ReservationError.badRequest(problem) }
        if let existing = book.first(where: { $0.request.idempotencyKey == request.idempotencyKey }) {
            guard existing.request == request else {
                throw ReservationError.conflict(
                    "idempotency key \(request.idempotencyKey) was used for another request (reservation \(existing.id))"
                )
            }
            return existing
        }
        guard request.typeID == typeID else { throw ReservationError.badRequest("unknown vGPU type \(request.typeID)") }
        guard devices.count + request.count <= slots else {
            throw ReservationError.noCapacity(
                "no capacity for \(request.count) × \(request.typeID): \(slots - devices.count) free")
        }
        let now = clock()
        let made = (0..<request.count).map { _ in
            ReservedDevice(
                id: UUID().uuidString.lowercased(), interface: .mdev, typeID: request.typeID,
                function: .pci(PCIAddress("0000:3b:00.0")!), gpu: .pci(PCIAddress("0000:3b:00.0")!))
        }
        for device in made { devices.insert(device.id) }
        let reservation = Reservation(
            id: UUID().uuidString.lowercased(), request: request, state: .active, devices: made, createdAt: now,
            updatedAt: now, leaseExpiresAt: now.addingTimeInterval(Double(request.leaseSeconds)))
        book.append(reservation)
        return reservation
    }

    package func reservations() async throws -> [Reservation] {
        try answer()
        return book
    }

    package func release(_ id: String) async throws -> Reservation {
        try answer()
        let reservation = try find(id)
        switch reservation.state {
        case .active, .creating, .releasing: return end(reservation)
        case .committed:
            throw ReservationError.conflict("reservation \(id) is committed: its devices belong to the migrated VM now")
        case .released, .expired, .failed, .lost: return reservation
        }
    }

    package func commit(_ id: String) async throws -> Reservation {
        try answer()
        var reservation = try find(id)
        switch reservation.state {
        case .active: break
        case .committed: return reservation
        case .creating, .releasing, .released, .expired, .failed, .lost:
            throw ReservationError.conflict(
                "reservation \(id) is \(reservation.state.rawValue) and cannot be committed")
        }
        reservation.state = .committed
        reservation.updatedAt = clock()
        store(reservation)
        return reservation
    }

    package func retire(_ id: String) async throws -> Reservation {
        try answer()
        let reservation = try find(id)
        switch reservation.state {
        case .active, .creating, .releasing, .committed: return end(reservation)
        case .released, .expired, .failed, .lost: return reservation
        }
    }

    /// Removes the devices no process holds; `releasing` while one is held.
    private func end(_ ending: Reservation) -> Reservation {
        var reservation = ending
        let held = reservation.devices.filter { heldOpen.contains($0.id) }
        for device in reservation.devices where !heldOpen.contains(device.id) { devices.remove(device.id) }
        if held.isEmpty {
            reservation.state = .released
        } else {
            reservation.state = .releasing
            reservation.reason =
                held.map { "\($0.id) is held open by process 1 (qemu-system-x86)" }.joined(separator: "; ")
                + ": removed as soon as it is closed"
        }
        reservation.updatedAt = clock()
        store(reservation)
        return reservation
    }

    private func find(_ id: String) throws -> Reservation {
        guard let reservation = book.first(where: { $0.id == id }) else {
            throw ReservationError.notFound("no reservation \(id)")
        }
        return reservation
    }

    private func store(_ reservation: Reservation) {
        if let index = book.firstIndex(where: { $0.id == reservation.id }) { book[index] = reservation }
    }

    private func answer() throws {
        guard answering else { throw URLError(.cannotConnectToHost) }
    }
}
