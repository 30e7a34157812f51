import Foundation

/// A host's hypervisor as the migration engine uses it: libvirt in production
/// (`LibvirtConnection`), an in-memory stand-in that follows libvirt's semantics in unit tests.
package protocol Hypervisor: Sendable {
    /// The domain called `name`, or nil when the host has none by that name.
    func guestDomain(named name: String) async throws -> (any HypervisorDomain)?
}

/// One domain (VM) on a hypervisor, with the calls a migration makes on it.
package protocol HypervisorDomain: Sendable {
    var name: String { get }
    /// The domain XML; `migratable` gives the form the destination accepts as `destination_xml`.
    func xml(migratable: Bool) async throws -> String
    /// Whether the domain runs.
    func isActive() async throws -> Bool
    /// The running job's statistics, or with `completed` those of the last completed job.
    func jobStats(completed: Bool) async throws -> DomainJobStats
    /// The most downtime the running migration may cause.
    func setMaxDowntime(milliseconds: UInt64) async throws
    /// Aborts the running job; the guest stays where it is. The migration call then throws an
    /// error whose ``HypervisorError/abortedJob`` is true.
    func abortJob() async throws
    /// Says a migration of the domain is coming: an implementation may open ahead what the
    /// migration call needs (libvirt: its own connection). Returns at once; changes nothing a
    /// caller can see but the time `migrate` takes to start.
    func prepareMigration()
    /// Migrates the domain to the hypervisor at `destinationURI`; returns when the migration ended
    /// (the domain then runs there).
    func migrate(to destinationURI: String, parameters: MigrationParameters, flags: MigrationFlags) async throws
    /// The domain's migration events until the stream is cancelled.
    func migrationEvents() async throws -> MigrationEventStream
}

/// An error from a hypervisor call.
package protocol HypervisorError: Error, CustomStringConvertible {
    /// The hypervisor's own words.
    var message: String { get }
    /// The job ended because an abort was asked for (libvirt: `VIR_ERR_OPERATION_ABORTED`).
    var abortedJob: Bool { get }
}

/// A migration event: a new pass over memory, or the end of the job with its statistics.
package enum MigrationEvent: Sendable, Hashable {
    /// A new pass over the guest's memory began (pass numbers start at 1).
    case iteration(Int)
    /// The job ended; its final statistics.
    case jobCompleted(DomainJobStats)
}

/// The migration events of one domain, until ``cancel()``.
package struct MigrationEventStream: Sendable {
    /// The events, in the order the hypervisor sent them.
    package var events: AsyncStream<MigrationEvent>
    private let stop: @Sendable () async -> Void

    package init(events: AsyncStream<MigrationEvent>, cancel: @escaping @Sendable () async -> Void) {
        self.events = events
        self.stop = cancel
    }

    /// Stops the events and ends the stream.
    package func cancel() async { await stop() }
}

/// What a migration is given besides the destination (libvirt's typed migration parameters).
package struct MigrationParameters: Sendable, Hashable {
    /// `destination_xml`: the domain XML the destination starts (with the reserved vGPUs).
    package var destinationXML: String?
    /// `persistent_xml`: the persistent definition on the destination.
    package var persistentXML: String?
    /// `migrate_uri`: where the migration data goes (`tcp://10.0.0.2`).
    package var migrateURI: String?
    /// `listen_address`: where the destination QEMU listens for it.
    package var listenAddress: String?
    /// `bandwidth` in MiB/s; nil is unlimited.
    package var bandwidthMiBPerSecond: UInt64?
    /// `parallel.connections`.
    package var parallelConnections: Int32?

    package init(
        destinationXML: String? = nil, persistentXML: String? = nil, migrateURI: String? = nil,
        listenAddress: String? = nil, bandwidthMiBPerSecond: UInt64? = nil, parallelConnections: Int32? = nil
    ) {
        self.destinationXML = destinationXML
        self.persistentXML = persistentXML
        self.migrateURI = migrateURI
        self.listenAddress = listenAddress
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
        self.parallelConnections = parallelConnections
    }
}

/// How a migration runs (libvirt's `virDomainMigrateFlags`, mapped by the libvirt wrapper).
package struct MigrationFlags: OptionSet, Sendable, Hashable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }

    /// The guest keeps running while its memory is copied.
    package static let live = MigrationFlags(rawValue: 1 << 0)
    /// The source daemon connects to the destination daemon itself.
    package static let peerToPeer = MigrationFlags(rawValue: 1 << 1)
    /// The domain is defined (persistent) on the destination.
    package static let persistDestination = MigrationFlags(rawValue: 1 << 2)
    /// The domain's definition is removed from the source once it moved.
    package static let undefineSource = MigrationFlags(rawValue: 1 << 3)
    /// Post-copy may be switched to (never for a VM with vGPUs).
    package static let postCopy = MigrationFlags(rawValue: 1 << 4)
    /// Several connections carry the migration data.
    package static let parallel = MigrationFlags(rawValue: 1 << 5)

    /// Live, peer-to-peer, persistent on the destination, undefined on the source.
    package static let standard: MigrationFlags = [.live, .peerToPeer, .persistDestination, .undefineSource]
}

/// The statistics of a domain job (libvirt's `virDomainGetJobStats`); fields the hypervisor does
/// not report stay nil.
package struct DomainJobStats: Sendable, Hashable {
    /// `virDomainJobType`: 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed, 5 cancelled.
    package var type: Int32
    package var operation: Int32?
    package var timeElapsedMilliseconds: UInt64?
    package var dataTotalBytes: UInt64?
    package var dataProcessedBytes: UInt64?
    package var dataRemainingBytes: UInt64?
    package var memoryTotalBytes: UInt64?
    package var memoryProcessedBytes: UInt64?
    package var memoryRemainingBytes: UInt64?
    package var memoryBytesPerSecond: UInt64?
    package var memoryDirtyRatePagesPerSecond: UInt64?
    package var memoryIteration: UInt64?
    package var memoryPageSize: UInt64?
    /// Expected downtime while running; the real one once completed.
    package var downtimeMilliseconds: UInt64?
    package var setupTimeMilliseconds: UInt64?
    /// `vfio_data_transferred` (libvirt 10.6 and later).
    package var vfioDataTransferredBytes: UInt64?
    package var errorMessage: String?

    /// libvirt's job types.
    package static let none: Int32 = 0
    package static let bounded: Int32 = 1
    package static let unbounded: Int32 = 2
    package static let completed: Int32 = 3

    package init(
        type: Int32, operation: Int32? = nil, timeElapsedMilliseconds: UInt64? = nil, dataTotalBytes: UInt64? = nil,
        dataProcessedBytes: UInt64? = nil, dataRemainingBytes: UInt64? = nil, memoryTotalBytes: UInt64? = nil,
        memoryProcessedBytes: UInt64? = nil, memoryRemainingBytes: UInt64? = nil,
        memoryBytesPerSecond: UInt64? = nil, memoryDirtyRatePagesPerSecond: UInt64? = nil,
        memoryIteration: UInt64? = nil, memoryPageSize: UInt64? = nil, downtimeMilliseconds: UInt64? = nil,
        setupTimeMilliseconds: UInt64? = nil, vfioDataTransferredBytes: UInt64? = nil, errorMessage: String? = nil
    ) {
        self.type = type
        self.operation = operation
        self.timeElapsedMilliseconds = timeElapsedMilliseconds
        self.dataTotalBytes = dataTotalBytes
        self.dataProcessedBytes = dataProcessedBytes
        self.dataRemainingBytes = dataRemainingBytes
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryProcessedBytes = memoryProcessedBytes
        self.memoryRemainingBytes = memoryRemainingBytes
        self.memoryBytesPerSecond = memoryBytesPerSecond
        self.memoryDirtyRatePagesPerSecond = memoryDirtyRatePagesPerSecond
        self.memoryIteration = memoryIteration
        self.memoryPageSize = memoryPageSize
        self.downtimeMilliseconds = downtimeMilliseconds
        self.setupTimeMilliseconds = setupTimeMilliseconds
        self.vfioDataTransferredBytes = vfioDataTransferredBytes
        self.errorMessage = errorMessage
    }

    /// A job is running.
    package var isActive: Bool { type == Self.bounded || type == Self.unbounded }

    package func sample(at time: Date) -> JobSample {
        JobSample(
            time: time, elapsedMilliseconds: timeElapsedMilliseconds ?? 0, dataTotalBytes: dataTotalBytes,
            dataProcessedBytes: dataProcessedBytes, dataRemainingBytes: dataRemainingBytes,
            memoryBytesPerSecond: memoryBytesPerSecond, dirtyPagesPerSecond: memoryDirtyRatePagesPerSecond,
            iteration: memoryIteration, downtimeMilliseconds: downtimeMilliseconds,
            vfioDataTransferredBytes: vfioDataTransferredBytes)
    }
}

extension HypervisorDomain {
    /// The domain XML as defined.
    package func xml() async throws -> String { try await xml(migratable: false) }
    /// The running job's statistics.
    package func jobStats() async throws -> DomainJobStats { try await jobStats(completed: false) }
}
