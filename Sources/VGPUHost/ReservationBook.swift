import Foundation
import VGPUMigrationCore

/// The host's vGPU reservations, durable across agent restarts.
///
/// Every change is appended to a journal (`reservations.jsonl`, one reservation per line, the
/// last line of an id wins) and flushed to disk *before* the devices it names are created or
/// removed, so after a crash the agent knows every device it may have made. One actor
/// serializes all changes: two requests never plan the same free device.
package actor ReservationBook {
    private let allocator: VGPUAllocator
    private let journal: URL
    private let now: @Sendable () -> Date
    private let persistence: MdevctlPersistence?
    private var reservations: [String: Reservation] = [:]
    /// Counters for /metrics.
    package private(set) var createdTotal = 0
    package private(set) var refusedForCapacityTotal = 0

    /// Opens the book in `stateDirectory`, then reconciles the journal with what the host shows:
    /// a reservation interrupted while creating is rolled back (failed); an active one whose
    /// device vanished is lost (its other devices removed); an active one past its lease is
    /// expired (devices removed); devices of ended reservations that are still there are removed.
    package init(
        allocator: VGPUAllocator, stateDirectory: URL, persistence: MdevctlPersistence? = nil,
        now: @escaping @Sendable () -> Date = Date.init
    ) throws {
        self.allocator = allocator
        self.now = now
        self.persistence = persistence
        try FileManager.default.createDirectory(at: stateDirectory, withIntermediateDirectories: true)
        self.journal = stateDirectory.appendingPathComponent("reservations.jsonl")
        var loaded: [String: Reservation] = [:]
        if let data = FileManager.default.contents(atPath: journal.path) {
            let decoder = JSONDecoder()
            for (index, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
                do {
                    let reservation = try decoder.decode(Reservation.self, from: Data(line))
                    loaded[reservation.id] = reservation
                } catch {
                    // A torn last line (crash mid-write) is dropped; anything else is corruption.
                    if index < data.split(separator: UInt8(ascii: "\n")).count - 1 {
                        throw ReservationError.corruptJournal("line \(index + 1) of \(journal.path): \(error)")
                    }
                }
            }
        }
        self.reservations = loaded
    }

    /// Settles the journal against the host; call once after opening. Returns what changed.
    @discardableResult
    package func reconcile() throws -> [Reservation] {
        var changed: [Reservation] = []
        for var reservation in reservations.values.sorted(by: { $0.createdAt < $1.createdAt }) {
            switch reservation.state {
            case .creating:
                try removeAll(reservation.devices)
                reservation.state = .failed
                reservation.reason = "the agent stopped while creating the devices; they were removed"
            case .active:
                let missing = try reservation.devices.filter { !(try allocator.exists($0)) }
                if let gone = missing.first {
                    try removeAll(reservation.devices)
                    reservation.state = .lost
                    reservation.reason =
                        "device \(gone.id) vanished from the host; the reservation's other devices were removed"
                } else if reservation.leaseExpiresAt <= now() {
                    try removeAll(reservation.devices)
                    reservation.state = .expired
                    reservation.reason = "the lease ended while the agent was down"
                } else {
                    continue
                }
            case .released, .expired, .failed, .lost:
                if try reservation.devices.contains(where: { try allocator.exists($0) }) {
                    try removeAll(reservation.devices)
                    reservation.reason =
                        (reservation.reason.map { $0 + "; " } ?? "") + "leftover devices removed after a restart"
                } else {
                    continue
                }
            case .committed:
                continue
            }
            reservation.updatedAt = now()
            try record(reservation)
            changed.append(reservation)
        }
        try compact()
        return changed
    }

    // MARK: Operations

    /// Reserves `request.count` vGPUs; the same idempotency key returns the same reservation.
    /// Returns the reservation and whether it was created by this call.
    package func reserve(_ request: ReservationRequest) throws(ReservationError) -> (Reservation, created: Bool) {
        if let problem = request.problem { throw .badRequest(problem) }
        if let existing = reservations.values.first(where: { $0.request.idempotencyKey == request.idempotencyKey }) {
            guard existing.request == request else {
                throw .conflict(
                    "idempotency key \(request.idempotencyKey) was used for another request (reservation \(existing.id))"
                )
            }
            return (existing, false)
        }
        let planned: [ReservedDevice]
        do {
            planned = try allocator.plan(typeID: request.typeID, count: request.count)
        } catch {
            switch error {
            case .unknownType: throw .badRequest(error.description)
            case .noCapacity:
                refusedForCapacityTotal += 1
                throw .noCapacity(error.description)
            case .host: throw .internal(error.description)
            }
        }
        let created = now()
        var reservation = Reservation(
            id: UUID().uuidString.lowercased(), request: request, state: .creating, devices: planned,
            createdAt: created, updatedAt: created,
            leaseExpiresAt: created.addingTimeInterval(Double(request.leaseSeconds)))
        try journaled(reservation)
        var made: [ReservedDevice] = []
        for device in planned {
            do {
                try allocator.create(device)
                made.append(device)
            } catch {
                try? removeAll(made)
                reservation.state = .failed
                reservation.reason = "creating \(device.id) failed: \(error)"
                reservation.updatedAt = now()
                try journaled(reservation)
                throw .internal(reservation.reason!)
            }
        }
        reservation.state = .active
        reservation.updatedAt = now()
        try journaled(reservation)
        createdTotal += 1
        return (reservation, true)
    }

    package func reservation(_ id: String) throws(ReservationError) -> Reservation {
        guard let reservation = reservations[id] else { throw .notFound("no reservation \(id)") }
        return reservation
    }

    /// All reservations, oldest first.
    package func all() -> [Reservation] {
        reservations.values.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Removes the devices and ends the reservation. Releasing an ended one returns it unchanged.
    package func release(_ id: String) throws(ReservationError) -> Reservation {
        let reservation = try self.reservation(id)
        switch reservation.state {
        case .active, .creating:
            break
        case .committed:
            throw .conflict("reservation \(id) is committed: its devices belong to the migrated VM now")
        case .released, .expired, .failed, .lost:
            return reservation
        }
        return try removeDevices(of: reservation)
    }

    /// The VM that used a committed reservation's devices has left this host (migrated away):
    /// removes the devices (and their mdevctl definitions) and ends the reservation. An active
    /// one is released; an ended one is returned unchanged.
    package func retire(_ id: String) throws(ReservationError) -> Reservation {
        var reservation = try self.reservation(id)
        switch reservation.state {
        case .active, .creating:
            return try release(id)
        case .committed:
            break
        case .released, .expired, .failed, .lost:
            return reservation
        }
        if let persistence {
            let failures = reservation.devices.compactMap { persistence.undefine($0) }
            if !failures.isEmpty { reservation.reason = failures.joined(separator: "; ") }
        }
        return try removeDevices(of: reservation)
    }

    /// Removes the reservation's devices and records it released.
    private func removeDevices(of ending: Reservation) throws(ReservationError) -> Reservation {
        var reservation = ending
        do {
            try removeAll(reservation.devices)
        } catch {
            throw .internal("removing the devices of \(reservation.id) failed: \(error)")
        }
        reservation.state = .released
        reservation.updatedAt = now()
        try journaled(reservation)
        return reservation
    }

    /// The migration succeeded: the devices stay and the lease no longer applies.
    package func commit(_ id: String) throws(ReservationError) -> Reservation {
        var reservation = try self.reservation(id)
        switch reservation.state {
        case .active:
            break
        case .committed:
            return reservation
        case .creating, .released, .expired, .failed, .lost:
            throw .conflict("reservation \(id) is \(reservation.state.rawValue) and cannot be committed")
        }
        reservation.state = .committed
        if let persistence {
            let failures = reservation.devices.compactMap { persistence.define($0) }
            if !failures.isEmpty {
                reservation.reason = failures.joined(separator: "; ") + "; the device will not survive a host reboot"
            }
        }
        reservation.updatedAt = now()
        try journaled(reservation)
        return reservation
    }

    /// Releases every active reservation whose lease has ended. Returns those it expired.
    @discardableResult
    package func expireDue() -> [Reservation] {
        var expired: [Reservation] = []
        for var reservation in reservations.values
        where reservation.state == .active && reservation.leaseExpiresAt <= now() {
            do {
                try removeAll(reservation.devices)
                reservation.state = .expired
                reservation.reason = "the lease of \(reservation.request.leaseSeconds) s ended without a commit"
                reservation.updatedAt = now()
                try journaled(reservation)
                expired.append(reservation)
            } catch {
                // Left active: the next pass tries again.
            }
        }
        return expired
    }

    // MARK: Journal

    private func journaled(_ reservation: Reservation) throws(ReservationError) {
        do {
            try record(reservation)
        } catch {
            throw .internal("cannot write the reservation journal \(journal.path): \(error)")
        }
    }

    private func record(_ reservation: Reservation) throws {
        let encoder = Self.journalEncoder()
        var line = try encoder.encode(reservation)
        line.append(UInt8(ascii: "\n"))
        if !FileManager.default.fileExists(atPath: journal.path) {
            FileManager.default.createFile(atPath: journal.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: journal)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
        try handle.synchronize()
        reservations[reservation.id] = reservation
    }

    /// Rewrites the journal with one line per reservation (atomically).
    private func compact() throws {
        let encoder = Self.journalEncoder()
        var data = Data()
        for reservation in all() {
            data.append(try encoder.encode(reservation))
            data.append(UInt8(ascii: "\n"))
        }
        try data.write(to: journal, options: .atomic)
    }

    /// The journal keeps dates as numbers, to the sub-second (the API shows ISO 8601).
    private static func journalEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    private func removeAll(_ devices: [ReservedDevice]) throws {
        for device in devices { try allocator.remove(device) }
    }
}

/// Why a reservation operation was refused.
package enum ReservationError: Error, Sendable, CustomStringConvertible {
    case badRequest(String)
    case notFound(String)
    case conflict(String)
    case noCapacity(String)
    case corruptJournal(String)
    case `internal`(String)

    package var description: String {
        switch self {
        case .badRequest(let m), .notFound(let m), .conflict(let m), .noCapacity(let m), .internal(let m): m
        case .corruptJournal(let m): "the reservation journal is damaged: \(m)"
        }
    }
}
