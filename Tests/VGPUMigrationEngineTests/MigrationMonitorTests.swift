import Foundation
import Synchronization
import Testing
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUPolicies
import VGPUTestSupport

/// The monitor and the downtime controller over whole schedules, in virtual time: Nova's ten
/// steps over fifty minutes run through in milliseconds, each limit set when the schedule says.
@Suite("migration monitor (virtual time): limits set on the schedule's times, timeouts, a job taken over")
struct MonitorTests {
    /// A job that never converges: its remaining data goes down by 1 MiB a second from 100 GiB.
    final class EndlessJob: HypervisorDomain {
        let clock: VirtualClock
        let started: Date
        private let state = Mutex((aborted: false, limits: [(Date, UInt64)]()))

        init(clock: VirtualClock) {
            self.clock = clock
            started = clock.now
        }

        var name: String { "vm-endless" }
        var limits: [(seconds: Double, milliseconds: UInt64)] {
            state.withLock { $0.limits.map { ($0.0.timeIntervalSince(started), $0.1) } }
        }
        var aborted: Bool { state.withLock { $0.aborted } }

        func xml(migratable: Bool) async throws -> String { "" }
        func isActive() async throws -> Bool { true }
        func jobStats(completed: Bool) async throws -> DomainJobStats {
            guard !completed, !aborted else { return DomainJobStats(type: DomainJobStats.none) }
            let elapsed = clock.now.timeIntervalSince(started)
            return DomainJobStats(
                type: DomainJobStats.unbounded, timeElapsedMilliseconds: UInt64(elapsed * 1000),
                dataTotalBytes: 100 << 30, dataRemainingBytes: (100 << 30) - UInt64(elapsed) << 20,
                memoryBytesPerSecond: 1 << 30, memoryIteration: 2)
        }
        func setMaxDowntime(milliseconds: UInt64) async throws {
            state.withLock { $0.limits.append((clock.now, milliseconds)) }
        }
        func abortJob() async throws { state.withLock { $0.aborted = true } }
        func prepareMigration() {}
        func migrate(to destinationURI: String, parameters: MigrationParameters, flags: MigrationFlags) async throws {}
        func migrationEvents() async throws -> MigrationEventStream {
            MigrationEventStream(events: AsyncStream { $0.finish() }) {}
        }
    }

    func policy(_ name: String) throws -> MigrationPolicy {
        let file = TestData.policies.appendingPathComponent("\(name).yaml")
        return try MigrationPolicyFile.parseMigrationPolicy(try TestData.text(file), name: name, file: file.path)
    }

    /// Watches `job` under `policy` for a guest of `memoryGiB` until it ends; returns the record.
    func watch(
        _ job: EndlessJob, policy: MigrationPolicy?, memoryGiB: UInt64, setsInitialLimit: Bool,
        record: MigrationRecord? = nil
    ) async throws -> MigrationRecord {
        let store = InMemoryHistoryStore()
        var record =
            record
            ?? MigrationRecord(id: "m", vm: job.name, source: "src", destination: "dst", policy: "p", at: job.started)
        try await store.begin(record)
        let recorder = MigrationRecorder(
            store: store, journal: nil, clock: job.clock, events: .discarded, logger: .silent)
        var monitor = MigrationMonitor(
            guest: job,
            controller: policy.map {
                DowntimeController(
                    policy: $0, memoryBytes: memoryGiB << 30, framebufferBytes: 0, untrackedFramebufferBytes: 0)
            },
            startedAt: job.started, interval: .milliseconds(policy?.monitorIntervalMilliseconds ?? 1000),
            setsInitialLimit: setsInitialLimit, clock: job.clock, recorder: recorder, events: .discarded,
            logger: .silent)
        _ = await monitor.watch(&record, until: .jobEnds)
        return record
    }

    @Test(
        "Nova's defaults on a 4 GiB guest: 11 limits, each within one monitor interval of its step time, then the completion timeout aborts"
    )
    func novaScheduleOnTime() async throws {
        let clock = VirtualClock()
        let job = EndlessJob(clock: clock)
        let nova = try policy("nova-default")

        let record = try await watch(job, policy: nova, memoryGiB: 4, setsInitialLimit: true)

        let planned = NovaSteps.steps(downtimeMilliseconds: 500, steps: 10, delaySecondsPerGiB: 75, memoryGiB: 4)
        #expect(job.limits.map(\.milliseconds) == planned.map { UInt64($0.milliseconds) })
        for (set, plan) in zip(job.limits, planned) {
            #expect(set.seconds >= Double(plan.seconds) && set.seconds < Double(plan.seconds) + 1.01, "\(set) \(plan)")
        }
        // 800 s per GiB: aborted at 3200 s, the guest staying where it is.
        #expect(job.aborted)
        let abort = try #require(record.intents.first { $0.action == .abort })
        #expect(abs(abort.time.timeIntervalSince(job.started) - 3200) <= 1.01)
        #expect(abort.details["reason"]?.hasPrefix("completion timeout") == true)
        #expect(record.sampleCount >= 3200)
        #expect(clock.slept >= .seconds(3200))
    }

    @Test("a job taken over (reconcile): no initial limit, and a limit below the one already set is not applied")
    func takenOverKeepsHigherLimit() async throws {
        let clock = VirtualClock()
        let job = EndlessJob(clock: clock)
        var earlier = MigrationRecord(
            id: "m", vm: job.name, source: "src", destination: "dst", policy: "p", at: clock.now)
        earlier.downtimeSteps = [
            DowntimeStep(time: clock.now, milliseconds: 400, reason: "set by the coordinator that died")
        ]

        let record = try await watch(
            job, policy: try policy("nova-default"), memoryGiB: 4, setsInitialLimit: false, record: earlier)

        // Nova's steps under 400 ms (50 … 365) are skipped; 410 … 500 are set.
        #expect(job.limits.map(\.milliseconds) == [410, 455, 500])
        #expect(record.downtimeSteps.map(\.milliseconds) == [400, 410, 455, 500])
        #expect(job.aborted)
    }

    @Test("without a policy the monitor only records: no limits, no abort, until the job ends")
    func watchOnly() async throws {
        let clock = VirtualClock()
        let job = EndlessJob(clock: clock)
        // The job ends (aborted by someone else) 30 virtual seconds in.
        clock.whenMoved { now in
            if now.timeIntervalSince(job.started) >= 30 { try? await job.abortJob() }
        }
        let record = try await watch(job, policy: nil, memoryGiB: 4, setsInitialLimit: false)
        #expect(job.limits.isEmpty)
        #expect(record.intents.isEmpty)
        #expect(record.sampleCount >= 29)
    }
}
