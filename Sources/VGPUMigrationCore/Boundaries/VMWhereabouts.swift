/// Where a VM runs once its migration call ended in an error, or its coordinator stopped: the
/// answer that decides what becomes of the destination's vGPUs. Only a VM that runs on the
/// destination and nowhere else has switched over (commit); one that does not run on the
/// destination while the source holds it has not (release). Anything in between keeps the
/// reservation until both hosts answer.
package enum VMWhereabouts: Sendable, Hashable {
    /// Runs on the destination; the source does not run it (or no longer defines it).
    case destinationOnly
    /// Not on the destination, or not there while it still runs on the source.
    case notOnDestination
    /// It runs on both hosts (for a moment after a migration job ended, libvirt may not have
    /// stopped the destination's copy yet).
    case onBoth
    /// Not known: it runs on the destination and the source cannot be asked, or the destination
    /// cannot be asked while the source does not run it; says which.
    case unclear(String)

    /// Why neither a commit nor a release is safe, or nil when one is.
    package func unclearReason(source: String, destination: String) -> String? {
        switch self {
        case .destinationOnly, .notOnDestination: nil
        case .onBoth: "it runs on both \(destination) and \(source)"
        case .unclear(let why): why
        }
    }

    /// Asks both hypervisors (nil: no connection to that host) about the domain called `vm`.
    package static func locate(
        _ vm: String, source: (any Hypervisor)?, sourceName: String, destination: (any Hypervisor)?,
        destinationName: String
    ) async -> VMWhereabouts {
        let onDestination = await runs(vm, on: destination)
        let onSource = await runs(vm, on: source)
        switch (onDestination, onSource) {
        case (.yes, .no):
            return .destinationOnly
        case (.no, _), (.unknown, .yes):
            return .notOnDestination
        case (.yes, .yes):
            return .onBoth
        case (.yes, .unknown(let why)):
            return .unclear("it runs on \(destinationName) and \(sourceName) cannot be asked (\(why))")
        case (.unknown(let why), .no):
            return .unclear("it does not run on \(sourceName) and \(destinationName) cannot be asked (\(why))")
        case (.unknown(let destinationWhy), .unknown(let sourceWhy)):
            return .unclear(
                "neither host can be asked (\(destinationName): \(destinationWhy); \(sourceName): \(sourceWhy))")
        }
    }

    private enum Answer {
        case yes, no
        case unknown(String)
    }

    private static func runs(_ vm: String, on hypervisor: (any Hypervisor)?) async -> Answer {
        guard let hypervisor else { return .unknown("no connection") }
        do {
            guard let domain = try await hypervisor.guestDomain(named: vm) else { return .no }
            return try await domain.isActive() ? .yes : .no
        } catch {
            return .unknown("\(error)")
        }
    }
}
