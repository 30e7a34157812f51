import Foundation
import VGPUMigrationCore

/// The host's vGPU reservations, durable across agent restarts.
///
/// Every change is appended to a journal (`reservations.jsonl`, one reservation per line, the
/// last line of an id wins) and flushed to disk *before* the devices it names are created or
/// removed, so after a crash the agent knows every device it may have made. One actor
/// serializes all changes: two requests never plan the same free device. The actor runs on a
/// queue of its own (``BlockingIOExecutor``): its sysfs writes and fsyncs block, and must not hold
/// a thread of Swift's cooperative pool while they do.
package actor ReservationBook {
    private let executor = BlockingIOExecutor(label: "vgpu-agent.reservations")
    package nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    /// Whether the book's code runs on its own queue now (for tests).
    package var runsOffTheCooperativePool: Bool { executor.isCurrent }
    private let allocator: VGPUAllocator
    private let journal: URL
    private let now: @Sendable () -> Date
    private let persistence: MdevctlPersistence?
    private var reservations: [String: Reservation] = [:]
    /// Counters for /metrics.
    package private(set) var createdTotal = 0
    package private(set) var refusedForCapacityTotal = 0
    /// What opening the journal found and mended (a torn last line), for the agent to log.
    package private(set) var openingWarnings: [String] = []

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
        var torn = false
        if let data = FileManager.default.contents(atPath: journal.path) {
            let decoder = JSONDecoder()
            let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            for (index, line) in lines.enumerated() where !line.isEmpty {
                do {
                    let reservation = try decoder.decode(Reservation.self, from: Data(line))
                    loaded[reservation.id] = reservation
                } catch {
                    // Every line is written whole with its newline: a last line without one was
                    // cut short by a crash while it was written, and its change never happened.
                    // Any other line that does not read is corruption.
                    guard index == lines.count - 1 else {
                        throw ReservationError.corruptJournal("line \(index + 1) of \(journal.path): \(error)")
                    }
                    openingWarnings.append(
                        "the last line of \(journal.path) (line \(index + 1), \(line.count) bytes) was cut short by a "
                            + "crash while it was written; its change did not happen and the line was dropped")
                }
            }
            torn = !data.isEmpty && data.last != UInt8(ascii: "\n")
        }
        self.reservations = loaded
        // Rewritten whole, so the next line is not appended to a torn one.
        if torn { try Self.writeJournal(Self.ordered(loaded.values), to: journal) }
    }

    /// Settles the journal against the host; call once after opening. Returns what changed.
    /// A device a process holds open is never removed: its reservation is left `releasing`
    /// (or, when its lease ended, active) for ``expireDue()`` to settle once it is free.
    @discardableResult
    package func reconcile() throws -> [Reservation] {
        var changed: [Reservation] = []
        for reservation in reservations.values.sorted(by: { $0.createdAt < $1.createdAt }) {
            let settled: Reservation
            switch reservation.state {
            case .creating:
                settled = try end(
                    reservation, as: .failed,
                    reason: "the agent stopped while creating the devices; they were removed")
            case .active:
                let missing = try reservation.devices.filter { !(try allocator.exists($0)) }
                if let gone = missing.first {
                    settled = try end(
                        reservation, as: .lost,
                        reason: "device \(gone.id) vanished from the host; the reservation's other devices were removed"
                    )
                } else if reservation.leaseExpiresAt <= now(), try heldDevices(of: reservation) == nil {
                    settled = try end(reservation, as: .expired, reason: "the lease ended while the agent was down")
                } else {
                    continue
                }
            case .releasing:
                settled = try end(reservation, as: .released, reason: "removed once no process held them")
                if settled.state == .releasing { continue }
            case .released, .expired, .failed, .lost:
                guard try reservation.devices.contains(where: { try allocator.exists($0) }) else { continue }
                settled = try end(
                    reservation, as: reservation.state,
                    reason: (reservation.reason.map { $0 + "; " } ?? "") + "leftover devices removed after a restart")
            case .committed:
                continue
            }
            changed.append(settled)
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
            planned = try allocator.plan(typeID: request.typeID, count: request.count, prefer: request.prefer)
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
                for created in made { try? allocator.remove(created) }
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
    package func all() -> [Reservation] { Self.ordered(reservations.values) }

    private static func ordered(_ reservations: some Sequence<Reservation>) -> [Reservation] {
        reservations.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    /// Removes the devices and ends the reservation; while a process holds one open it is
    /// `releasing` (devices removed once free). Releasing an ended one returns it unchanged.
    package func release(_ id: String) throws(ReservationError) -> Reservation {
        let reservation = try self.reservation(id)
        switch reservation.state {
        case .active, .creating, .releasing:
            break
        case .committed:
            throw .conflict("reservation \(id) is committed: its devices belong to the migrated VM now")
        case .released, .expired, .failed, .lost:
            return reservation
        }
        return try end(reservation, as: .released, reason: nil)
    }

    /// The VM that used a committed reservation's devices has left this host (migrated away):
    /// removes the devices (and their mdevctl definitions) and ends the reservation. An active
    /// one is released; an ended one is returned unchanged.
    package func retire(_ id: String) throws(ReservationError) -> Reservation {
        let reservation = try self.reservation(id)
        switch reservation.state {
        case .active, .creating, .releasing:
            return try release(id)
        case .committed:
            break
        case .released, .expired, .failed, .lost:
            return reservation
        }
        var reason: String?
        if let persistence {
            let failures = reservation.devices.compactMap { persistence.undefine($0) }
            if !failures.isEmpty { reason = failures.joined(separator: "; ") }
        }
        return try end(reservation, as: .released, reason: reason)
    }

    /// Removes the reservation's devices that no process holds and ends it as `state` with
    /// `reason`; while a device is held the reservation is `releasing`, its reason naming the
    /// holders, and ``expireDue()`` finishes the removal once they let go.
    private func end(_ ending: Reservation, as state: ReservationState, reason: String?) throws(ReservationError)
        -> Reservation
    {
        var reservation = ending
        var held: [String] = []
        do {
            for device in reservation.devices {
                if let holders = try heldOpen(device) {
                    held.append(holders)
                } else {
                    try allocator.remove(device)
                }
            }
        } catch {
            throw .internal("removing the devices of \(reservation.id) failed: \(error)")
        }
        if held.isEmpty {
            reservation.state = state
            if let reason { reservation.reason = reason }
        } else {
            reservation.state = .releasing
            reservation.reason = held.joined(separator: "; ") + ": removed as soon as it is closed"
        }
        reservation.updatedAt = now()
        try journaled(reservation)
        return reservation
    }

    /// Who holds the reservation's devices open, in words; nil when no process does.
    private func heldDevices(of reservation: Reservation) throws -> String? {
        let held = try reservation.devices.compactMap { device in try heldOpen(device) }
        return held.isEmpty ? nil : held.joined(separator: "; ")
    }

    /// `UUID is held open by process 236 (qemu-system-x86)`; nil when no process holds `device`.
    private func heldOpen(_ device: ReservedDevice) throws(SysfsError) -> String? {
        let holders = try allocator.holders(of: device)
        return holders.isEmpty
            ? nil : "\(device.id) is held open by " + holders.map(\.description).joined(separator: ", ")
    }

    /// The migration succeeded: the devices stay and the lease no longer applies.
    package func commit(_ id: String) throws(ReservationError) -> Reservation {
        var reservation = try self.reservation(id)
        switch reservation.state {
        case .active:
            break
        case .committed:
            return reservation
        case .creating, .releasing, .released, .expired, .failed, .lost:
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

    /// The periodic pass: releases every active reservation whose lease has ended, and finishes
    /// the `releasing` ones whose devices are free now. A device a process holds open is never
    /// removed: an expired lease on a device in use (a VM runs on it, its commit was lost) stays
    /// active, saying so, until it is committed or released. Returns what changed.
    @discardableResult
    package func expireDue() -> [Reservation] {
        var changed: [Reservation] = []
        let due = reservations.values.filter { reservation in
            reservation.state == .releasing || (reservation.state == .active && reservation.leaseExpiresAt <= now())
        }
        for var reservation in due.sorted(by: { $0.createdAt < $1.createdAt }) {
            do {
                switch reservation.state {
                case .releasing:
                    let ended = try end(reservation, as: .released, reason: "removed once no process held them")
                    if ended.state == .released { changed.append(ended) }
                case .active where reservation.leaseExpiresAt <= now():
                    if let held = try heldDevices(of: reservation) {
                        let note = "the lease ended while \(held): kept until it is committed or released"
                        if reservation.reason != note {
                            reservation.reason = note
                            reservation.updatedAt = now()
                            try journaled(reservation)
                            changed.append(reservation)
                        }
                        continue
                    }
                    changed.append(
                        try end(
                            reservation, as: .expired,
                            reason: "the lease of \(reservation.request.leaseSeconds) s ended without a commit"))
                default:
                    continue
                }
            } catch {
                // Left as it is: the next pass tries again.
            }
        }
        return changed
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
            // When it cannot be made, opening it below says why.
            _ = FileManager.default.createFile(atPath: journal.path, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: journal)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
        try handle.synchronize()
        reservations[reservation.id] = reservation
    }

    /// Rewrites the journal with one line per reservation (atomically).
    private func compact() throws { try Self.writeJournal(all(), to: journal) }

    private static func writeJournal(_ reservations: [Reservation], to journal: URL) throws {
        let encoder = journalEncoder()
        var data = Data()
        for reservation in reservations {
            data.append(try encoder.encode(reservation))
            data.append(UInt8(ascii: "\n"))
        }
        try AtomicFile.replace(journal, with: data, durable: true)
    }

    /// The journal keeps dates as numbers, to the sub-second (the API shows ISO 8601).
    private static func journalEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
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
