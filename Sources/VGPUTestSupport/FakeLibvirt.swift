import Foundation
import VGPUMigrationCore
import VGPUMigrationEngine

/// An error as libvirt reports it: its code and message.
package struct FakeLibvirtError: HypervisorError, Equatable {
    package var code: Int32
    package var message: String
    package var abortedJob: Bool { code == Self.operationAborted }
    package var description: String { "\(message) (libvirt error \(code))" }

    package static let internalError: Int32 = 1  // VIR_ERR_INTERNAL_ERROR
    package static let noConnect: Int32 = 38  // VIR_ERR_SYSTEM_ERROR: unable to connect
    package static let noDomain: Int32 = 42  // VIR_ERR_NO_DOMAIN
    package static let operationInvalid: Int32 = 55  // VIR_ERR_OPERATION_INVALID
    package static let operationAborted: Int32 = 78  // VIR_ERR_OPERATION_ABORTED
    package static let deviceMissing: Int32 = 99  // VIR_ERR_DEVICE_MISSING
}

/// Two or more hypervisors in memory, for unit tests of the migration engine. They follow what
/// libvirt and QEMU do for the calls a migration makes:
///
/// - a handle of a domain that left the host (undefined after migrating) answers "no domain";
/// - `setMaxDowntime` and `abortJob` without a running job are refused as libvirt refuses them;
/// - the destination refuses a domain XML naming an mdev it does not have (QEMU cannot start);
/// - pre-copy: each pass sends what the guest dirtied during the one before, at the migration
///   bandwidth; QEMU switches over once what remains, counted after a sync of the dirty bitmap,
///   fits in the downtime limit at that rate;
/// - an abort ends the migration call with VIR_ERR_OPERATION_ABORTED and the guest running on
///   the source; a failing destination ends it with an error and the guest on the source.
///
/// The job moves in ticks of 10 ms of its clock: with the system's clock, real time (memory sizes
/// and rates are then chosen to take well under a second); with a ``VirtualClock``, the job moves
/// whenever the clock does, and a migration of minutes takes no time at all.
package actor FakeLibvirt {
    package struct Guest: Sendable {
        package var xml: String
        package var active: Bool
        /// How fast the guest dirties memory while it runs, in bytes per second.
        package var dirtyBytesPerSecond: UInt64
    }

    private struct Job {
        var destination: String
        var total: UInt64
        var processed: UInt64 = 0
        var remaining: UInt64
        var dirtiedThisPass: Double = 0
        var iteration: UInt64 = 1
        var bandwidth: UInt64
        var maxDowntimeMilliseconds: UInt64 = 300
        var started: Date
        /// How far the job has been moved.
        var movedTo: Date
        var abortRequested = false
        var flags: MigrationFlags
        var incoming: String
    }

    private let clock: any MigrationClock
    /// The migration calls waiting for their job to end (virtual time).
    private var endings: [String: CheckedContinuation<Void, any Error>] = [:]
    private var followsClock = false
    private static let tick = Duration.milliseconds(10)

    package init(clock: any MigrationClock = SystemClock()) {
        self.clock = clock
    }

    private var guests: [String: [String: Guest]] = [:]
    private var hostOfURI: [String: String] = [:]
    private var jobs: [String: Job] = [:]
    private var completed: [String: DomainJobStats] = [:]
    private var subscribers: [String: [UUID: AsyncStream<MigrationEvent>.Continuation]] = [:]
    private var failingDestinations: [String: String] = [:]
    private var failAfterSwitchover: String?
    private var unreachableAfterSwitchover: String?
    /// Hosts whose daemon does not answer.
    private var unreachable: Set<String> = []
    /// Whether host `host` has mdev `uuid` (the destination's agent tree, in the tests).
    private var mdevExists: @Sendable (_ host: String, _ uuid: String) -> Bool = { _, _ in true }
    /// Called with the destination's name when a migration switched over.
    private var onSwitchover: @Sendable (String) async -> Void = { _ in }
    /// The `destination_xml` each migration was given, in order.
    package private(set) var destinationXMLs: [String] = []
    /// Every downtime limit set, in order.
    package private(set) var downtimeLimits: [UInt64] = []
    /// Bandwidth when the migration parameters set none (bytes per second).
    private let defaultBandwidth: UInt64 = 1 << 30

    /// Adds a host reached at `uri`.
    package func addHost(_ name: String, uri: String) {
        hostOfURI[uri] = name
        guests[name, default: [:]] = guests[name] ?? [:]
    }

    /// Defines and starts a guest.
    package func start(_ name: String, on host: String, xml: String, dirtyMiBPerSecond: UInt64 = 0) {
        guests[host, default: [:]][name] = Guest(xml: xml, active: true, dirtyBytesPerSecond: dirtyMiBPerSecond << 20)
    }

    package func setMdevCheck(_ check: @escaping @Sendable (_ host: String, _ uuid: String) -> Bool) {
        mdevExists = check
    }

    package func setOnSwitchover(_ action: @escaping @Sendable (String) async -> Void) {
        onSwitchover = action
    }

    /// A running migration to `host` fails with `message` (its daemon or QEMU went away).
    package func failMigrations(to host: String, message: String) {
        failingDestinations[host] = message
    }

    /// The next migration switches over, then reports `message` as an error (libvirt's confirm
    /// phase failing after the destination took over).
    package func failAfterSwitchover(message: String, thenUnreachable host: String? = nil) {
        failAfterSwitchover = message
        unreachableAfterSwitchover = host
    }

    /// The daemon of `host` answers again.
    package func setReachable(_ host: String) {
        unreachable.remove(host)
    }

    package func guest(_ name: String, on host: String) -> Guest? { guests[host]?[name] }

    package func isMigrating(_ name: String, on host: String) -> Bool { jobs[key(host, name)] != nil }

    // MARK: The calls of HypervisorDomain

    package func exists(_ name: String, on host: String) throws -> Bool {
        try reach(host)
        return guests[host]?[name] != nil
    }

    package func xml(_ name: String, on host: String) throws -> String {
        try existing(name, on: host).xml
    }

    package func isActive(_ name: String, on host: String) throws -> Bool {
        try existing(name, on: host).active
    }

    package func jobStats(_ name: String, on host: String, completed wantCompleted: Bool) throws -> DomainJobStats {
        _ = try existing(name, on: host)
        if wantCompleted { return completed[key(host, name)] ?? DomainJobStats(type: DomainJobStats.none) }
        guard let job = jobs[key(host, name)] else { return DomainJobStats(type: DomainJobStats.none) }
        return DomainJobStats(
            type: DomainJobStats.unbounded, operation: 2,
            timeElapsedMilliseconds: UInt64(clock.now.timeIntervalSince(job.started) * 1000), dataTotalBytes: job.total,
            dataProcessedBytes: job.processed, dataRemainingBytes: job.remaining, memoryTotalBytes: job.total,
            memoryProcessedBytes: job.processed, memoryRemainingBytes: job.remaining,
            memoryBytesPerSecond: job.bandwidth,
            memoryDirtyRatePagesPerSecond: (guests[host]?[name]?.dirtyBytesPerSecond ?? 0) / 4096,
            memoryIteration: job.iteration, memoryPageSize: 4096,
            downtimeMilliseconds: job.remaining * 1000 / max(job.bandwidth, 1))
    }

    package func setMaxDowntime(_ name: String, on host: String, milliseconds: UInt64) throws {
        try requireJob(name, on: host, else: "domain is not being migrated")
        jobs[key(host, name)]?.maxDowntimeMilliseconds = milliseconds
        downtimeLimits.append(milliseconds)
    }

    package func abortJob(_ name: String, on host: String) throws {
        try requireJob(name, on: host, else: "no job is active on the domain")
        jobs[key(host, name)]?.abortRequested = true
    }

    /// Refuses a call that needs a running job, as libvirt does (VIR_ERR_OPERATION_INVALID).
    private func requireJob(_ name: String, on host: String, else reason: String) throws {
        _ = try existing(name, on: host)
        guard jobs[key(host, name)] != nil else {
            throw FakeLibvirtError(
                code: FakeLibvirtError.operationInvalid, message: "Requested operation is not valid: \(reason)")
        }
    }

    package func events(_ name: String, on host: String) throws -> MigrationEventStream {
        _ = try existing(name, on: host)
        let (stream, continuation) = AsyncStream.makeStream(of: MigrationEvent.self)
        let id = UUID()
        let subscription = key(host, name)
        subscribers[subscription, default: [:]][id] = continuation
        return MigrationEventStream(events: stream) { [weak self] in
            await self?.unsubscribe(subscription, id)
        }
    }

    private func unsubscribe(_ subscription: String, _ id: UUID) {
        subscribers[subscription]?.removeValue(forKey: id)?.finish()
    }

    package func migrate(
        _ name: String, on host: String, to uri: String, parameters: MigrationParameters, flags: MigrationFlags
    ) async throws {
        let guest = try existing(name, on: host)
        guard guest.active else {
            throw FakeLibvirtError(
                code: FakeLibvirtError.operationInvalid,
                message: "Requested operation is not valid: domain is not running")
        }
        guard let destination = hostOfURI[uri] else {
            throw FakeLibvirtError(
                code: FakeLibvirtError.noConnect, message: "unable to connect to server at '\(uri)': Connection refused"
            )
        }
        if guests[destination]?[name]?.active == true {
            throw FakeLibvirtError(
                code: FakeLibvirtError.operationInvalid, message: "operation failed: domain '\(name)' is already active"
            )
        }
        let incoming = parameters.destinationXML ?? guest.xml
        let domain = try GuestDomain.parse(xml: incoming)
        for case .mdev(let uuid) in domain.hostdevs.map(\.source) where !mdevExists(destination, uuid) {
            throw FakeLibvirtError(
                code: FakeLibvirtError.deviceMissing, message: "device not found: mediated device '\(uuid)' not found")
        }
        destinationXMLs.append(incoming)
        let bandwidth = parameters.bandwidthMiBPerSecond.map { $0 << 20 } ?? defaultBandwidth
        let id = key(host, name)
        jobs[id] = Job(
            destination: destination, total: domain.memoryBytes, remaining: domain.memoryBytes, bandwidth: bandwidth,
            started: clock.now, movedTo: clock.now, flags: flags, incoming: incoming)
        if let virtual = clock as? VirtualClock {
            // The job moves when the clock does.
            if !followsClock {
                followsClock = true
                virtual.whenMoved { [weak self] now in await self?.move(to: now) }
            }
            try await withCheckedThrowingContinuation { endings[id] = $0 }
            return
        }
        while true {
            try? await Task.sleep(for: Self.tick)
            if let ending = try await step(id) { return try ending.get() }
        }
    }

    /// Moves every job to `now`, tick by tick, and ends the calls whose job ended.
    private func move(to now: Date) async {
        for id in jobs.keys.sorted() {
            while let job = jobs[id], job.movedTo.addingTimeInterval(0.01) <= now {
                jobs[id]?.movedTo = job.movedTo.addingTimeInterval(0.01)
                if let ending = try? await step(id) {
                    endings.removeValue(forKey: id)?.resume(with: ending)
                    break
                }
            }
        }
    }

    /// One tick of job `id`; the call's result once the job ended, nil while it runs.
    private func step(_ id: String) async throws -> Result<Void, any Error>? {
        guard var job = jobs[id] else { return .success(()) }
        let (host, name) = split(id)
        guard let guest = guests[host]?[name] else { return .success(()) }
        let tick = 0.01
        if job.abortRequested {
            jobs[id] = nil
            return .failure(
                FakeLibvirtError(
                    code: FakeLibvirtError.operationAborted,
                    message: "operation aborted: migration out: canceled by client"))
        }
        if let failure = failingDestinations[job.destination] {
            jobs[id] = nil
            return .failure(FakeLibvirtError(code: FakeLibvirtError.internalError, message: failure))
        }
        // QEMU switches over once the rest fits in the limit at the current rate; before it
        // decides it syncs the dirty bitmap, so what the guest dirtied meanwhile counts too.
        let threshold = job.bandwidth * job.maxDowntimeMilliseconds / 1000
        if job.remaining <= threshold, job.dirtiedThisPass >= 1 {
            job.remaining = min(job.total, job.remaining + UInt64(job.dirtiedThisPass))
            job.dirtiedThisPass = 0
            job.iteration += 1
            for continuation in (subscribers[id] ?? [:]).values {
                continuation.yield(.iteration(Int(job.iteration)))
            }
        }
        if job.remaining <= threshold {
            let downtime = job.remaining * 1000 / max(job.bandwidth, 1)
            jobs[id] = nil
            let stats = DomainJobStats(
                type: DomainJobStats.completed, operation: 2,
                timeElapsedMilliseconds: UInt64(clock.now.timeIntervalSince(job.started) * 1000),
                dataTotalBytes: job.total, dataProcessedBytes: job.processed + job.remaining, dataRemainingBytes: 0,
                memoryBytesPerSecond: job.bandwidth, memoryIteration: job.iteration, downtimeMilliseconds: downtime)
            guests[job.destination, default: [:]][name] = Guest(
                xml: job.incoming, active: true, dirtyBytesPerSecond: guest.dirtyBytesPerSecond)
            if job.flags.contains(.undefineSource) {
                guests[host]?[name] = nil
            } else {
                guests[host]?[name]?.active = false
            }
            completed[key(job.destination, name)] = stats
            completed[id] = stats
            for continuation in (subscribers[id] ?? [:]).values { continuation.yield(.jobCompleted(stats)) }
            await onSwitchover(job.destination)
            if let message = failAfterSwitchover {
                failAfterSwitchover = nil
                if let host = unreachableAfterSwitchover { unreachable.insert(host) }
                return .failure(FakeLibvirtError(code: FakeLibvirtError.internalError, message: message))
            }
            return .success(())
        }
        let sent = min(job.remaining, UInt64(Double(job.bandwidth) * tick))
        job.processed += sent
        job.remaining -= sent
        job.dirtiedThisPass += Double(guest.dirtyBytesPerSecond) * tick
        if job.remaining == 0 {
            // The pass ended: the next one resends what was dirtied meanwhile.
            job.remaining = min(job.total, UInt64(job.dirtiedThisPass))
            job.dirtiedThisPass = 0
            job.iteration += 1
            for continuation in (subscribers[id] ?? [:]).values {
                continuation.yield(.iteration(Int(job.iteration)))
            }
        }
        jobs[id] = job
        return nil
    }

    private func reach(_ host: String) throws {
        guard !unreachable.contains(host) else {
            throw FakeLibvirtError(
                code: FakeLibvirtError.noConnect, message: "Cannot recv data: Connection reset by peer")
        }
    }

    private func existing(_ name: String, on host: String) throws -> Guest {
        try reach(host)
        guard let guest = guests[host]?[name] else {
            throw FakeLibvirtError(
                code: FakeLibvirtError.noDomain, message: "Domain not found: no domain with matching name '\(name)'")
        }
        return guest
    }

    private func key(_ host: String, _ name: String) -> String { "\(host)/\(name)" }

    private func split(_ key: String) -> (host: String, name: String) {
        let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
        return (parts[0], parts.count > 1 ? parts[1] : "")
    }
}

/// One host of a ``FakeLibvirt``.
package struct FakeHypervisor: Hypervisor {
    package var lab: FakeLibvirt
    package var host: String

    package init(lab: FakeLibvirt, host: String) {
        self.lab = lab
        self.host = host
    }

    package func guestDomain(named name: String) async throws -> (any HypervisorDomain)? {
        try await lab.exists(name, on: host) ? FakeDomain(lab: lab, host: host, name: name) : nil
    }
}

/// A domain handle on a ``FakeHypervisor``.
package struct FakeDomain: HypervisorDomain {
    package var lab: FakeLibvirt
    package var host: String
    package var name: String

    package func xml(migratable: Bool) async throws -> String { try await lab.xml(name, on: host) }
    package func isActive() async throws -> Bool { try await lab.isActive(name, on: host) }
    package func jobStats(completed: Bool) async throws -> DomainJobStats {
        try await lab.jobStats(name, on: host, completed: completed)
    }
    package func setMaxDowntime(milliseconds: UInt64) async throws {
        try await lab.setMaxDowntime(name, on: host, milliseconds: milliseconds)
    }
    package func abortJob() async throws { try await lab.abortJob(name, on: host) }
    /// Nothing to open ahead in memory.
    package func prepareMigration() {}
    package func migrate(to destinationURI: String, parameters: MigrationParameters, flags: MigrationFlags) async throws
    {
        try await lab.migrate(name, on: host, to: destinationURI, parameters: parameters, flags: flags)
    }
    package func migrationEvents() async throws -> MigrationEventStream { try await lab.events(name, on: host) }
}
