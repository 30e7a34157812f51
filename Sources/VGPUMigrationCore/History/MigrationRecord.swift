import struct Foundation.Date

/// One state change of a migration.
package struct TransitionEvent: Sendable, Hashable, Codable {
    package var time: Date
    package var from: MigrationState
    package var to: MigrationState
    package var reason: String
    package var details: [String: String]

    package init(time: Date, from: MigrationState, to: MigrationState, reason: String, details: [String: String] = [:])
    {
        self.time = time
        self.from = from
        self.to = to
        self.reason = reason
        self.details = details
    }
}

/// What all the job samples of a migration showed, also those the record no longer keeps:
/// updated with every sample, so it is there while the migration runs and after it.
package struct JobSampleSummary: Sendable, Hashable, Codable {
    /// The highest transfer rate a sample reported.
    package var peakMemoryBytesPerSecond: UInt64?
    /// The mean of the transfer rates the samples reported.
    package var meanMemoryBytesPerSecond: Double?
    /// How many samples reported a transfer rate (the mean's weight).
    package var rateSamples: Int
    /// The highest dirty rate a sample reported, in pages per second.
    package var peakDirtyPagesPerSecond: UInt64?
    /// The highest pass over memory a sample reported.
    package var passes: UInt64?
    /// The least data a sample reported left to send.
    package var leastRemainingBytes: UInt64?
    /// The most VFIO device state a sample reported sent (libvirt 10.6 and later).
    package var vfioDataTransferredBytes: UInt64?

    package init() { rateSamples = 0 }

    /// Takes `sample` in.
    package mutating func add(_ sample: JobSample) {
        if let rate = sample.memoryBytesPerSecond {
            peakMemoryBytesPerSecond = max(peakMemoryBytesPerSecond ?? 0, rate)
            rateSamples += 1
            let mean = meanMemoryBytesPerSecond ?? 0
            meanMemoryBytesPerSecond = mean + (Double(rate) - mean) / Double(rateSamples)
        }
        if let dirty = sample.dirtyPagesPerSecond { peakDirtyPagesPerSecond = max(peakDirtyPagesPerSecond ?? 0, dirty) }
        if let pass = sample.iteration { passes = max(passes ?? 0, pass) }
        if let remaining = sample.dataRemainingBytes {
            leastRemainingBytes = min(leastRemainingBytes ?? .max, remaining)
        }
        if let vfio = sample.vfioDataTransferredBytes {
            vfioDataTransferredBytes = max(vfioDataTransferredBytes ?? 0, vfio)
        }
    }

    enum CodingKeys: String, CodingKey {
        case peakMemoryBytesPerSecond = "peak_memory_bytes_per_s"
        case meanMemoryBytesPerSecond = "mean_memory_bytes_per_s"
        case rateSamples = "rate_samples"
        case peakDirtyPagesPerSecond = "peak_dirty_pages_per_s"
        case passes
        case leastRemainingBytes = "least_remaining_bytes"
        case vfioDataTransferredBytes = "vfio_data_transferred_bytes"
    }
}

/// A downtime limit the coordinator set during the migration.
package struct DowntimeStep: Sendable, Hashable, Codable {
    package var time: Date
    package var milliseconds: Int
    package var reason: String

    package init(time: Date, milliseconds: Int, reason: String) {
        self.time = time
        self.milliseconds = milliseconds
        self.reason = reason
    }
}

/// One reading of the migration job's statistics.
package struct JobSample: Sendable, Hashable, Codable {
    /// The page size libvirt counts the dirty rate in: 4 KiB on x86.
    package static let pageBytes: UInt64 = 4096

    package var time: Date
    package var elapsedMilliseconds: UInt64
    package var dataTotalBytes: UInt64?
    package var dataProcessedBytes: UInt64?
    package var dataRemainingBytes: UInt64?
    package var memoryBytesPerSecond: UInt64?
    package var dirtyPagesPerSecond: UInt64?
    package var iteration: UInt64?
    /// Expected downtime while running; the real downtime once completed.
    package var downtimeMilliseconds: UInt64?
    /// VFIO device state sent so far (`vfio_data_transferred`, libvirt 10.6 and later): what
    /// the VM's mediated devices carried over, which `data_*` does not count.
    package var vfioDataTransferredBytes: UInt64?

    /// The dirty rate in bytes per second (``pageBytes`` a page).
    package var dirtyBytesPerSecond: UInt64? { dirtyPagesPerSecond.map { $0 * Self.pageBytes } }

    package init(
        time: Date, elapsedMilliseconds: UInt64, dataTotalBytes: UInt64? = nil, dataProcessedBytes: UInt64? = nil,
        dataRemainingBytes: UInt64? = nil, memoryBytesPerSecond: UInt64? = nil, dirtyPagesPerSecond: UInt64? = nil,
        iteration: UInt64? = nil, downtimeMilliseconds: UInt64? = nil, vfioDataTransferredBytes: UInt64? = nil
    ) {
        self.time = time
        self.elapsedMilliseconds = elapsedMilliseconds
        self.dataTotalBytes = dataTotalBytes
        self.dataProcessedBytes = dataProcessedBytes
        self.dataRemainingBytes = dataRemainingBytes
        self.memoryBytesPerSecond = memoryBytesPerSecond
        self.dirtyPagesPerSecond = dirtyPagesPerSecond
        self.iteration = iteration
        self.downtimeMilliseconds = downtimeMilliseconds
        self.vfioDataTransferredBytes = vfioDataTransferredBytes
    }
}

/// What the coordinator is about to do that changes something outside it, recorded first so a
/// restarted coordinator knows what may have happened.
package struct Intent: Sendable, Hashable, Codable {
    package enum Action: String, Sendable, Hashable, Codable {
        case reserve, startMigration = "start-migration", release, commit, abort
        /// Release the vGPU the VM left behind on the source host.
        case releaseSource = "release-source"
    }
    package var time: Date
    package var action: Action
    package var details: [String: String]

    package init(time: Date, action: Action, details: [String: String] = [:]) {
        self.time = time
        self.action = action
        self.details = details
    }
}

extension Intent {
    /// Reserve `count` vGPUs of type `typeID` on the destination.
    package static func reserve(typeID: String, count: Int, at time: Date) -> Intent {
        Intent(time: time, action: .reserve, details: ["type": typeID, "count": String(count)])
    }

    /// Start the libvirt migration to `destinationURI`; `sourceVGPUs` are the VM's vGPUs on the
    /// source, which a reconciler gives back if the VM moved.
    package static func startMigration(to destinationURI: String, sourceVGPUs: [HostdevSource], at time: Date)
        -> Intent
    {
        var details = ["to": destinationURI]
        if !sourceVGPUs.isEmpty { details[Key.sourceVGPUs] = encode(sourceVGPUs) }
        return Intent(time: time, action: .startMigration, details: details)
    }

    /// Commit destination reservation `id`.
    package static func commit(reservation id: String, at time: Date) -> Intent {
        Intent(time: time, action: .commit, details: [Key.reservation: id])
    }

    /// Release destination reservation `id`.
    package static func release(reservation id: String, at time: Date) -> Intent {
        Intent(time: time, action: .release, details: [Key.reservation: id])
    }

    /// A release that could not be made, and why.
    package static func releaseFailed(_ why: String, at time: Date) -> Intent {
        Intent(time: time, action: .release, details: ["failed": why])
    }

    /// Release source reservation `id`, whose vGPU the VM left behind.
    package static func releaseSource(reservation id: String, at time: Date) -> Intent {
        Intent(time: time, action: .releaseSource, details: [Key.reservation: id])
    }

    /// Abort the migration job.
    package static func abort(reason: String, at time: Date) -> Intent {
        Intent(time: time, action: .abort, details: ["reason": reason])
    }

    /// The reservation a commit or release names.
    package var reservationID: String? { details[Key.reservation] }
    /// Why an abort was asked for.
    package var reason: String? { details["reason"] }
    /// Where a migration was started to.
    package var destinationURI: String? { details["to"] }
    /// The VM's vGPUs on the source that a started migration named.
    package var sourceVGPUs: [HostdevSource] { details[Key.sourceVGPUs].map(Self.decode) ?? [] }

    private enum Key {
        static let reservation = "reservation"
        static let sourceVGPUs = "source_vgpus"
    }

    /// `mdev:UUID,pci:ADDRESS`, as records keep it.
    private static func encode(_ sources: [HostdevSource]) -> String {
        sources.map {
            switch $0 {
            case .mdev(let uuid): "mdev:\(uuid)"
            case .pci(let address): "pci:\(address)"
            }
        }.joined(separator: ",")
    }

    private static func decode(_ text: String) -> [HostdevSource] {
        text.split(separator: ",").compactMap { item in
            if item.hasPrefix("mdev:") { return .mdev(uuid: String(item.dropFirst(5))) }
            if item.hasPrefix("pci:") { return PCIAddress(String(item.dropFirst(4))).map { .pci($0) } }
            return nil
        }
    }
}

/// The destination reservation a migration holds.
package struct ReservationReference: Sendable, Hashable, Codable {
    /// The host whose agent holds it.
    package var host: String
    package var id: String
    package var devices: [ReservedDevice]
    package var state: ReservationState

    package init(host: String, id: String, devices: [ReservedDevice], state: ReservationState) {
        self.host = host
        self.id = id
        self.devices = devices
        self.state = state
    }
}

/// Something that happened to the record rather than to the migration: the history store could
/// not be written for a while, the record was kept in the local journal and replayed.
package struct RecordNote: Sendable, Hashable, Codable {
    package var time: Date
    package var text: String

    package init(time: Date, text: String) {
        self.time = time
        self.text = text
    }
}

/// Every migration, from request to outcome: the record `history` lists and `show` prints.
package struct MigrationRecord: Sendable, Hashable, Codable {
    package var id: String
    package var vm: String
    package var source: String
    package var destination: String
    package var policy: String
    package private(set) var state: MigrationState
    package var createdAt: Date
    package var updatedAt: Date
    package private(set) var events: [TransitionEvent]
    package var downtimeSteps: [DowntimeStep]
    /// The most recent job samples, at most ``sampleLimit``; ``sampleSummary`` covers them all.
    package private(set) var samples: [JobSample]
    /// How many samples were taken in all (also those no longer kept).
    package private(set) var sampleCount: Int
    /// What all the samples showed; nil before the first (and in records written before the
    /// summary existed).
    package private(set) var sampleSummary: JobSampleSummary?
    package var findings: [CompatibilityFinding]
    package var reservation: ReservationReference?
    package var intents: [Intent]
    /// The job's statistics when it ended.
    package var finalStats: JobSample?
    /// What happened to the record itself; nil when nothing did (and in records written before
    /// notes existed).
    package private(set) var notes: [RecordNote]?

    /// How many samples a record keeps.
    package static let sampleLimit = 600

    package init(id: String, vm: String, source: String, destination: String, policy: String, at time: Date) {
        self.id = id
        self.vm = vm
        self.source = source
        self.destination = destination
        self.policy = policy
        self.state = .requested
        self.createdAt = time
        self.updatedAt = time
        self.events = []
        self.downtimeSteps = []
        self.samples = []
        self.sampleCount = 0
        self.findings = []
        self.intents = []
    }

    /// Moves to `next`, recording why; refuses what the table does not allow.
    package mutating func transition(
        to next: MigrationState, reason: String, details: [String: String] = [:], at time: Date
    ) throws(IllegalTransition) {
        guard state.canMove(to: next) else { throw IllegalTransition(from: state, to: next) }
        events.append(TransitionEvent(time: time, from: state, to: next, reason: reason, details: details))
        state = next
        updatedAt = time
    }

    /// Keeps `sample`, dropping the oldest beyond ``sampleLimit``, and adds it to the summary.
    package mutating func record(sample: JobSample) {
        samples.append(sample)
        sampleCount += 1
        var summary = sampleSummary ?? JobSampleSummary()
        summary.add(sample)
        sampleSummary = summary
        if samples.count > Self.sampleLimit { samples.removeFirst(samples.count - Self.sampleLimit) }
        updatedAt = max(updatedAt, sample.time)
    }

    /// Adds a note about the record.
    package mutating func note(_ text: String, at time: Date) {
        notes = (notes ?? []) + [RecordNote(time: time, text: text)]
    }

    /// The downtime the guest saw (final statistics), in milliseconds.
    package var downtimeMilliseconds: UInt64? { finalStats?.downtimeMilliseconds }

    /// Seconds from request to the terminal state (or to the last update while running).
    package var durationSeconds: Double { updatedAt.timeIntervalSince(createdAt) }

    enum CodingKeys: String, CodingKey {
        case id, vm, source, destination, policy, state
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case events
        case downtimeSteps = "downtime_steps"
        case samples
        case sampleCount = "sample_count"
        case sampleSummary = "sample_summary"
        case findings, reservation, intents
        case finalStats = "final_stats"
        case notes
    }
}

extension TransitionEvent {
    enum CodingKeys: String, CodingKey { case time, from, to, reason, details }
}

extension JobSample {
    enum CodingKeys: String, CodingKey {
        case time
        case elapsedMilliseconds = "elapsed_ms"
        case dataTotalBytes = "data_total_bytes"
        case dataProcessedBytes = "data_processed_bytes"
        case dataRemainingBytes = "data_remaining_bytes"
        case memoryBytesPerSecond = "memory_bytes_per_s"
        case dirtyPagesPerSecond = "dirty_pages_per_s"
        case iteration
        case downtimeMilliseconds = "downtime_ms"
        case vfioDataTransferredBytes = "vfio_data_transferred_bytes"
    }
}
