import Foundation
import Testing
import VGPUAgentClient
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUMigrationStorage
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUMigrationCLI

/// The migration engine with a vGPU VM: the hypervisors are ``FakeLibvirt`` (no host here can run
/// a guest with a real mdev), the agents are real `vgpu-agent` processes over fixture trees, the
/// history a real SQLite file. These show what the end-to-end lab cannot: the reservation's fate
/// when a VM with vGPUs completes, is aborted, or fails.
@Suite("migration engine with a vGPU VM: reservation committed on success, released on abort or failure")
struct MigrationRunTests {
    /// One migration's surroundings: two fake hosts `src` and `dst`, an agent for each, a history.
    final class Bench: @unchecked Sendable {
        let directory: URL
        let lab = FakeLibvirt()
        let store: SQLiteHistoryStore
        let sourceAgent: RunningProcess
        let sourceURL: String
        let sourceTree: URL
        let destinationAgent: RunningProcess
        let destinationURL: String
        let destinationTree: URL
        let lines = LineLog()

        init(destinationFixture: String = "t4-b") async throws {
            directory = try temporaryDirectory()
            (sourceAgent, sourceURL, sourceTree) = try startAgent(fixture: "t4-a", in: directory)
            (destinationAgent, destinationURL, destinationTree) = try startAgent(
                fixture: destinationFixture, in: directory)
            store = try SQLiteHistoryStore(path: directory.appendingPathComponent("history.sqlite").path)
            await lab.addHost("src", uri: "fake://src/system")
            await lab.addHost("dst", uri: "fake://dst/system")
            let tree = destinationTree
            // The destination starts QEMU only with mdevs that exist in its tree.
            await lab.setMdevCheck { host, uuid in host == "dst" && mdevs(in: tree).contains(uuid) }
        }

        deinit {
            sourceAgent.stop()
            destinationAgent.stop()
            try? FileManager.default.removeItem(at: directory)
        }

        /// A vGPU on `src` as an earlier migration there leaves it: created and committed by its agent.
        func sourceVGPU() async throws -> String {
            try #require(try await earlierMigrationsVGPU(sourceURL).devices.first?.id)
        }

        /// Starts VM `name` on `src` with one T4-4Q vGPU `mdev` and `memoryMiB` of RAM.
        func startGuest(_ name: String, mdev: String, memoryMiB: Int, dirtyMiBPerSecond: UInt64 = 0) async throws {
            let xml = try TestData.text(TestData.fixtures.appendingPathComponent("domains/vm-t4.xml"))
                .replacingOccurrences(of: "<name>vm-t4</name>", with: "<name>\(name)</name>")
                .replacingOccurrences(of: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", with: mdev)
                .replacingOccurrences(
                    of: "<memory unit='GiB'>16</memory>", with: "<memory unit='MiB'>\(memoryMiB)</memory>"
                )
                .replacingOccurrences(
                    of: "<currentMemory unit='GiB'>16</currentMemory>",
                    with: "<currentMemory unit='MiB'>\(memoryMiB)</currentMemory>")
            await lab.start(name, on: "src", xml: xml, dirtyMiBPerSecond: dirtyMiBPerSecond)
        }

        /// Host facts as the agent reports them, with the versions libvirt would add.
        func facts(_ url: String, uuid: String) async throws -> HostInventory {
            var facts = try await operatorClient(url).facts()
            facts.libvirtVersion = "10.0.0"
            facts.hypervisorVersion = "8.2.2"
            facts.hostUUID = uuid
            facts.totalMemoryBytes = 64 << 30
            facts.freeMemoryBytes = 32 << 30
            return facts
        }

        func run(_ vm: String, policy: MigrationPolicy, force: Set<String> = []) async throws -> MigrationRun {
            return MigrationRun(
                store: store,
                source: MigrationHost(
                    name: "src", facts: try await facts(sourceURL, uuid: "00000000-0000-4000-8000-00000000000a"),
                    hypervisor: FakeHypervisor(lab: lab, host: "src"), agent: operatorClient(sourceURL)),
                destination: MigrationHost(
                    name: "dst", facts: try await facts(destinationURL, uuid: "00000000-0000-4000-8000-00000000000b"),
                    hypervisor: FakeHypervisor(lab: lab, host: "dst"), agent: operatorClient(destinationURL),
                    libvirtURI: "fake://dst/system"),
                policy: policy, vm: vm, bandwidthMiBPerSecond: 1250, forcedChecks: force, events: lines.sink)
        }

        /// Starts VM `vm`, which cannot converge at 300 ms (it dirties 4 GiB/s, the link sends
        /// 1 GiB/s), and its migration under `fixed-300ms`; returns once the job runs.
        func startCrawlingMigration(_ vm: String) async throws -> Task<MigrationRecord, any Error> {
            try await startGuest(
                vm, mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 512, dirtyMiBPerSecond: 4096)
            let migration = try await run(
                vm, policy: try MigrationRunTests.policy("fixed-300ms"), force: MigrationRunTests.overFixedCap)
            let running = Task { try await migration.run() }
            #expect(await eventually(within: 10) { await lab.isMigrating(vm, on: "src") })
            return running
        }
    }

    /// Collects the engine's events as the command line prints them.
    final class LineLog: @unchecked Sendable {
        private let lock = NSLock()
        private var items: [String] = []
        func add(_ line: String) { lock.withLock { items.append(line) } }
        var all: [String] { lock.withLock { items } }
        var sink: MigrationEventSink {
            MigrationEventSink { [self] event in
                if case .line(let text) = MigrationEventText.render(event, running: nil) { add(text) }
            }
        }
    }

    /// What the fixed 300 ms policies' check refuses for a T4 vGPU (Turing has no dirty-page
    /// tracking: its framebuffer moves while the guest is paused, far over 300 ms); forced where a
    /// test needs a job that cannot converge.
    static let overFixedCap: Set<String> = ["downtime.estimate", "gpu.dirty-tracking"]

    /// A repository policy with test-sized intervals and the migration limited to 1024 MiB/s.
    static func policy(
        _ name: String, completionSecondsPerGiB: Double = 600, onTimeout: TimeoutAction? = nil
    ) throws -> MigrationPolicy {
        let file = TestData.policies.appendingPathComponent("\(name).yaml")
        var policy = try MigrationPolicyFile.parseMigrationPolicy(
            try TestData.text(file), name: name, file: file.path)
        policy.monitorIntervalMilliseconds = 20
        policy.completionTimeoutSecondsPerGiB = completionSecondsPerGiB
        policy.bandwidthMiBPerSecond = 1024
        if let onTimeout { policy.onTimeout = onTimeout }
        return policy
    }

    @Test(
        "completed: the reserved vGPU is in the destination XML, the reservation committed, the source vGPU given back")
    func completes() async throws {
        let bench = try await Bench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-ok", mdev: sourceDevice, memoryMiB: 1024)

        let record = try await bench.run("vm-ok", policy: try Self.policy("adaptive")).run()

        #expect(record.state == .completed, "\(bench.lines.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .completed])
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit, .releaseSource])
        let reservation = try #require(record.reservation)
        #expect(reservation.state == .committed)
        let reserved = try #require(reservation.devices.first?.id)
        #expect(reserved != sourceDevice)
        // The destination started the guest on the reserved device, not on the source's.
        let sent = try #require(await bench.lab.destinationXMLs.first)
        #expect(sent.contains(reserved) && !sent.contains(sourceDevice))
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.committed])
        #expect(mdevs(in: bench.destinationTree).contains(reserved))
        // The guest moved: defined and running on dst, gone from src; its vGPU there removed.
        #expect(await bench.lab.guest("vm-ok", on: "dst")?.active == true)
        #expect(await bench.lab.guest("vm-ok", on: "src") == nil)
        #expect(!mdevs(in: bench.sourceTree).contains(sourceDevice))
        #expect(record.events.last?.details["source_vgpu"] == "released mdev \(sourceDevice) on src")
        #expect(record.finalStats?.downtimeMilliseconds != nil)
        let stored = try #require(try await bench.store.record(id: record.id))
        #expect(stored.state == .completed && stored.intents.map(\.action) == record.intents.map(\.action))
    }

    @Test("aborted while migrating (as 'vgpu-migrate abort' does): cancelled, the reservation released, VM on src")
    func abortReleases() async throws {
        let bench = try await Bench()
        let running = try await bench.startCrawlingMigration("vm-abort")
        // The reservation exists while the job runs.
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.active])
        #expect(mdevs(in: bench.destinationTree).count == 1)
        // Another process: looks the domain up on the source and aborts its job.
        let other = try #require(try await FakeHypervisor(lab: bench.lab, host: "src").guestDomain(named: "vm-abort"))
        try await other.abortJob()

        let record = try await running.value
        #expect(record.state == .cancelled, "\(bench.lines.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .cancelled])
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        #expect(record.reservation?.state == .released)
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.released])
        #expect(mdevs(in: bench.destinationTree).isEmpty)
        #expect(await bench.lab.guest("vm-abort", on: "src")?.active == true)
        #expect(await bench.lab.guest("vm-abort", on: "dst") == nil)
        // An abort with no job left is refused, as libvirt refuses it.
        await #expect(throws: FakeLibvirtError.self) { try await other.abortJob() }
    }

    @Test("the destination fails during the migration: failed, the reservation released, VM on src")
    func destinationFailureReleases() async throws {
        let bench = try await Bench()
        let running = try await bench.startCrawlingMigration("vm-dst-down")
        await bench.lab.failMigrations(to: "dst", message: "End of file while reading data: Input/output error")

        let record = try await running.value
        #expect(record.state == .failed, "\(bench.lines.all)")
        #expect(record.events.last?.reason.contains("End of file while reading data") == true)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.released])
        #expect(mdevs(in: bench.destinationTree).isEmpty)
        #expect(await bench.lab.guest("vm-dst-down", on: "src")?.active == true)
    }

    @Test("the policy's completion timeout aborts a guest that cannot converge: failed, the reservation released")
    func timeoutReleases() async throws {
        let bench = try await Bench()
        try await bench.startGuest(
            "vm-slow", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        // 0.2 s per GiB of RAM and framebuffer: about a second for this guest.
        let policy = try Self.policy("fixed-300ms", completionSecondsPerGiB: 0.2, onTimeout: .abort)

        let record = try await bench.run("vm-slow", policy: policy, force: Self.overFixedCap).run()

        #expect(record.state == .failed, "\(bench.lines.all)")
        #expect(record.events.last?.reason.contains("aborted by the policy: completion timeout") == true)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .abort, .release])
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.released])
        #expect(mdevs(in: bench.destinationTree).isEmpty)
        #expect(await bench.lab.guest("vm-slow", on: "src")?.active == true)
        #expect(await bench.lab.downtimeLimits.allSatisfy { $0 <= 300 })
    }

    @Test("the destination's last vGPU is taken between check and reserve: failed before any migration, nothing on dst")
    func noCapacityStopsBeforeMigrating() async throws {
        let bench = try await Bench(destinationFixture: "t4-full")
        try await bench.startGuest("vm-full", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 512)
        // The check sees the full destination; forced past it, the agent still refuses.
        let record = try await bench.run("vm-full", policy: try Self.policy("adaptive"), force: ["vgpu.capacity"]).run()

        #expect(record.state == .failed, "\(bench.lines.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .failed])
        #expect(record.events.last?.reason.contains("no capacity") == true, "\(record.events.last?.reason ?? "")")
        #expect(record.intents.map(\.action) == [.reserve])
        #expect(record.reservation == nil)
        #expect(await bench.lab.destinationXMLs.isEmpty)
        #expect(await bench.lab.guest("vm-full", on: "src")?.active == true)
    }

    @Test(
        "the destination's agent is down after the switchover: unknown (not failed), its reservation kept, the source's vGPU given back; reconcile then commits"
    )
    func commitFailureKeepsReservation() async throws {
        let bench = try await Bench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-commit", mdev: sourceDevice, memoryMiB: 1024)
        let agent = bench.destinationAgent
        await bench.lab.setOnSwitchover { _ in agent.stop() }

        let record = try await bench.run("vm-commit", policy: try Self.policy("adaptive")).run()

        #expect(record.state == .unknown, "\(bench.lines.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .unknown])
        let reason = try #require(record.events.last?.reason)
        #expect(reason.contains("the VM runs on dst") && reason.contains("vgpu-migrate reconcile"), "\(reason)")
        // The commit and the source's give-back run side by side: the VM has left the source.
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit, .releaseSource])
        #expect(!mdevs(in: bench.sourceTree).contains(sourceDevice))
        #expect(record.reservation?.state == .active)
        #expect(await bench.lab.guest("vm-commit", on: "dst")?.active == true)
        // The agent back (same tree and journal): the reservation is still there, its device too.
        let device = try #require(record.reservation?.devices.first?.id)
        let (restarted, url, _) = try launchAgent(fixture: "t4-b", in: bench.directory)
        defer { restarted.stop() }
        #expect(try await operatorClient(url).reservations().map(\.state) == [.active])
        #expect(mdevs(in: bench.destinationTree) == [device])
        // Still unfinished in the history, so reconcile (also run before every migrate) takes it:
        // the VM runs on dst, so the reservation is committed.
        #expect(try await bench.store.unfinished().map(\.id) == [record.id])
        let hosts = FakeHosts(lab: bench.lab, agents: ["src": bench.sourceURL, "dst": url])
        let log = bench.lines
        let settled = try await Reconciler(
            store: bench.store, hosts: hosts, staleAfterSeconds: 0, events: log.sink
        ).reconcileAll(vm: "vm-commit")
        #expect(settled.map(\.state) == [.completed], "\(bench.lines.all)")
        #expect(settled.first?.events.suffix(1).map(\.from) == [.unknown])
        #expect(try await operatorClient(url).reservations().map(\.state) == [.committed])
        #expect(mdevs(in: bench.destinationTree) == [device])
        #expect(!mdevs(in: bench.sourceTree).contains(sourceDevice))
        #expect(try await bench.store.unfinished().isEmpty)
    }

    @Test("libvirt reports an error, the VM runs on the destination and the source does not answer: unknown, kept")
    func unclearOutcomeKeepsReservation() async throws {
        let bench = try await Bench()
        try await bench.startGuest("vm-unclear", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 1024)
        await bench.lab.failAfterSwitchover(message: "End of file while reading data", thenUnreachable: "src")

        let record = try await bench.run("vm-unclear", policy: try Self.policy("adaptive")).run()

        #expect(record.state == .unknown, "\(bench.lines.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .unknown])
        let reason = try #require(record.events.last?.reason)
        #expect(reason.contains("it runs on dst and src cannot be asked"), "\(reason)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration])
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.active])
        #expect(mdevs(in: bench.destinationTree) == record.reservation?.devices.map(\.id))

        // reconcile while the source still does not answer: nothing settled, still unknown.
        let hosts = FakeHosts(lab: bench.lab, agents: ["src": bench.sourceURL, "dst": bench.destinationURL])
        let log = bench.lines
        let reconciler = Reconciler(store: bench.store, hosts: hosts, staleAfterSeconds: 0, events: log.sink)
        let kept = try await reconciler.reconcileAll(vm: "vm-unclear")
        #expect(kept.map(\.state) == [.unknown], "\(bench.lines.all)")
        #expect(kept.first?.events.count == record.events.count)
        #expect(kept.first?.intents.map(\.action) == [.reserve, .startMigration])
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.active])
        #expect(try await bench.store.unfinished().map(\.id) == [record.id])
        #expect(bench.lines.all.contains { $0.contains("\(record.id): unknown (cannot tell where the VM runs") })

        // The source answers again and no longer runs the VM: completed, the reservation committed.
        await bench.lab.setReachable("src")
        let settled = try await reconciler.reconcileAll(vm: "vm-unclear")
        #expect(settled.map(\.state) == [.completed], "\(bench.lines.all)")
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.committed])
        #expect(mdevs(in: bench.destinationTree) == record.reservation?.devices.map(\.id))
        #expect(try await bench.store.unfinished().isEmpty)
    }

    @Test("reconcile finds the VM running on both hosts: left unknown, nothing committed or released")
    func reconcileLeavesSplitVMUnknown() async throws {
        let bench = try await Bench()
        try await bench.startGuest("vm-both", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 1024)
        let record = try await bench.run("vm-both", policy: try Self.policy("adaptive")).run()
        #expect(record.state == .completed, "\(bench.lines.all)")
        // A record of an abandoned second migration of the VM while a copy also runs on the source.
        var abandonedRecord = try abandoned(vm: "vm-both", state: .migrating, intents: [.reserve, .startMigration])
        abandonedRecord.source = "dst"
        abandonedRecord.destination = "src"
        try await bench.store.begin(abandonedRecord)
        await bench.lab.start("vm-both", on: "src", xml: try await bench.lab.xml("vm-both", on: "dst"))
        let hosts = FakeHosts(lab: bench.lab, agents: ["src": bench.sourceURL, "dst": bench.destinationURL])
        let log = bench.lines
        let before = try await operatorClient(bench.destinationURL).reservations().map(\.state)

        let settled = try await Reconciler(
            store: bench.store, hosts: hosts, staleAfterSeconds: 0, events: log.sink
        ).reconcileAll(vm: "vm-both")

        #expect(settled.map(\.state) == [.unknown], "\(bench.lines.all)")
        let reason = try #require(settled.first?.events.last?.reason)
        #expect(reason.contains("it runs on both src and dst"), "\(reason)")
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == before)
        #expect(try await bench.store.unfinished().map(\.id) == [abandonedRecord.id])
    }

    @Test("libvirt reports an error after the destination took over: completed, the reservation committed")
    func errorAfterSwitchoverCompletes() async throws {
        let bench = try await Bench()
        try await bench.startGuest("vm-confirm", mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", memoryMiB: 1024)
        await bench.lab.failAfterSwitchover(message: "internal error: confirm phase: connection reset")

        let record = try await bench.run("vm-confirm", policy: try Self.policy("adaptive")).run()

        #expect(record.state == .completed, "\(bench.lines.all)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit])
        #expect(try await operatorClient(bench.destinationURL).reservations().map(\.state) == [.committed])
        #expect(mdevs(in: bench.destinationTree) == record.reservation?.devices.map(\.id))
        #expect(bench.lines.all.contains { $0.contains("but the VM runs on dst: it switched over") })
    }
}

/// The hosts of a ``FakeLibvirt``, with the agents at `agents` (host → URL).
struct FakeHosts: HostDirectory {
    var lab: FakeLibvirt
    var agents: [String: String]

    func hypervisor(of host: String) async throws(MigrationEngineError) -> any Hypervisor {
        FakeHypervisor(lab: lab, host: host)
    }

    func agent(of host: String) throws(MigrationEngineError) -> (any HostAgent)? {
        agents[host].map(operatorClient)
    }
}
