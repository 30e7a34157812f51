import Foundation
import VGPUMigrationCore

/// After a switchover: gives back the vGPUs the VM left on the source host. Only devices the
/// source's agent created (held by one of its reservations) are removed; anything else (made by
/// hand or by another tool) is left in place and said so. Never fails the migration: the VM
/// already runs on the destination.
package struct SourceVGPURelease: Sendable {
    /// The source host's agent; nil when the inventory gives it none.
    package var agent: (any HostAgent)?
    package var hostName: String

    package init(agent: (any HostAgent)?, hostName: String) {
        self.agent = agent
        self.hostName = hostName
    }

    package struct Outcome: Sendable, Equatable {
        /// What happened, for the record.
        package var summary: String
        /// The source reservations released.
        package var released: [String]
    }

    /// Releases the source reservations holding `sources`; `willRelease` is called with each
    /// reservation id first (to record the intent).
    package func run(sources: [HostdevSource], willRelease: (String) async throws -> Void) async -> Outcome {
        guard !sources.isEmpty else { return Outcome(summary: "", released: []) }
        let names = sources.map(\.description).joined(separator: ", ")
        guard let agent else {
            return Outcome(summary: "\(names) stays on \(hostName) (it has no agent_url)", released: [])
        }
        let held: [Reservation]
        do {
            held = try await agent.reservations().filter { $0.holds(any: Set(sources)) }
        } catch {
            return Outcome(summary: "\(names) stays on \(hostName): its agent did not answer (\(error))", released: [])
        }
        let heldSources = Set(held.flatMap { $0.devices.map(\.hostdevSource) })
        let others = sources.filter { !heldSources.contains($0) }
        let kept =
            others.isEmpty
            ? nil
            : others.map(\.description).joined(separator: ", ")
                + " stays on \(hostName): not created by its agent, left as it is"
        guard !held.isEmpty else { return Outcome(summary: kept ?? "", released: []) }
        var released: [String] = []
        var failures: [String] = []
        var pending: [String] = []
        for reservation in held {
            do {
                try await willRelease(reservation.id)
                let retired = try await agent.retire(reservation.id)
                released.append(reservation.id)
                if retired.state == .releasing { pending.append(retired.reason ?? "a device is still held open") }
            } catch {
                failures.append("reservation \(reservation.id): \(error)")
            }
        }
        let given =
            failures.isEmpty
            ? "released " + sources.filter { heldSources.contains($0) }.map(\.description).joined(separator: ", ")
                + " on \(hostName)"
            : "could not release everything on \(hostName): " + failures.joined(separator: "; ")
        let waiting = pending.isEmpty ? nil : "on \(hostName), " + pending.joined(separator: "; ")
        return Outcome(summary: [given, waiting, kept].compactMap { $0 }.joined(separator: "; "), released: released)
    }
}
