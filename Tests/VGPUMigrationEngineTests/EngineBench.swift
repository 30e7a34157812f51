import Foundation
import Synchronization
import Testing
import VGPUHost
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUPolicies
import VGPUTestSupport

/// One migration's surroundings, all in memory and in virtual time: two hosts `src` and `dst` of
/// a ``FakeLibvirt`` following a ``VirtualClock``, an ``InMemoryHostAgent`` on each (T4-4Q,
/// `nvidia-232`), a history that can stop answering and a journal. The hosts' facts are the T4
/// fixture trees, read as an agent reads them.
final class EngineBench: Sendable {
    let clock = VirtualClock()
    let lab: FakeLibvirt
    let history = InMemoryHistoryStore()
    let store: FlakyHistoryStore
    let journal = InMemoryRecordJournal()
    let sourceAgent: InMemoryHostAgent
    let destinationAgent: InMemoryHostAgent
    let events = EventLog()
    let sourceFacts: HostInventory
    let destinationFacts: HostInventory

    static let typeID = "nvidia-232"
    static let sourceMdev = "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10"

    init(destinationSlots: Int = 4) async throws {
        let made = MadeDevices()
        self.made = made
        lab = FakeLibvirt(clock: clock)
        store = FlakyHistoryStore(history)
        let clock = self.clock
        sourceAgent = InMemoryHostAgent(typeID: Self.typeID, slots: 4) { clock.now }
        destinationAgent = InMemoryHostAgent(typeID: Self.typeID, slots: destinationSlots) { clock.now }
        sourceFacts = try Self.facts("t4-a", uuid: "00000000-0000-4000-8000-00000000000a")
        destinationFacts = try Self.facts("t4-b", uuid: "00000000-0000-4000-8000-00000000000b")
        await lab.addHost("src", uri: "fake://src/system")
        await lab.addHost("dst", uri: "fake://dst/system")
        // The destination starts QEMU only with mdevs its agent made.
        await lab.setMdevCheck { host, uuid in host == "dst" && made.contains(uuid) }
    }

    private let made: MadeDevices

    /// Host facts from a fixture tree, with the versions libvirt would add.
    static func facts(_ fixture: String, uuid: String) throws -> HostInventory {
        let catalog = try GPUBoardCatalogFile.parse(
            try TestData.text(TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)), file: "boards")
        var facts = try SysfsHostProbe(
            sysfs: DirectorySysfs(root: TestData.fixtures.appendingPathComponent("hosts/\(fixture)").path),
            catalog: catalog
        ).inventory()
        facts.libvirtVersion = "10.0.0"
        facts.hypervisorVersion = "8.2.2"
        facts.hostUUID = uuid
        facts.totalMemoryBytes = 64 << 30
        facts.freeMemoryBytes = 32 << 30
        return facts
    }

    /// The fixture's vGPU on `src` as an earlier migration there leaves it: made and committed
    /// by the source's agent.
    func sourceVGPU() async throws -> String {
        let device = ReservedDevice(
            id: Self.sourceMdev, interface: .mdev, typeID: Self.typeID, function: .pci(PCIAddress("0000:3b:00.0")!),
            gpu: .pci(PCIAddress("0000:3b:00.0")!))
        await sourceAgent.adopt(
            Reservation(
                id: "earlier",
                request: ReservationRequest(
                    typeID: Self.typeID, count: 1, owner: "an-earlier-migration", leaseSeconds: 3600,
                    idempotencyKey: "earlier/reserve"),
                state: .committed, devices: [device], createdAt: clock.now, updatedAt: clock.now,
                leaseExpiresAt: clock.now))
        return Self.sourceMdev
    }

    /// Starts VM `name` on `src` with one T4-4Q vGPU `mdev` and `memoryMiB` of RAM.
    func startGuest(_ name: String, mdev: String = sourceMdev, memoryMiB: Int, dirtyMiBPerSecond: UInt64 = 0)
        async throws
    {
        let xml = try TestData.text(TestData.fixtures.appendingPathComponent("domains/vm-t4.xml"))
            .replacingOccurrences(of: "<name>vm-t4</name>", with: "<name>\(name)</name>")
            .replacingOccurrences(of: Self.sourceMdev, with: mdev)
            .replacingOccurrences(
                of: "<memory unit='GiB'>16</memory>", with: "<memory unit='MiB'>\(memoryMiB)</memory>"
            )
            .replacingOccurrences(
                of: "<currentMemory unit='GiB'>16</currentMemory>",
                with: "<currentMemory unit='MiB'>\(memoryMiB)</currentMemory>")
        await lab.start(name, on: "src", xml: xml, dirtyMiBPerSecond: dirtyMiBPerSecond)
    }

    /// The destination's agent as the run sees it: every device it makes is known to the
    /// destination's QEMU.
    var destinationForRun: any HostAgent {
        ObservedAgent(agent: destinationAgent) { [made] reservation in made.insert(reservation.devices.map(\.id)) }
    }

    func run(
        _ vm: String, policy: MigrationPolicy, force: Set<String> = [], destinationAgent: (any HostAgent)? = nil,
        abort: AbortRequest? = nil
    ) -> MigrationRun {
        MigrationRun(
            store: store, journal: journal,
            source: MigrationHost(
                name: "src", facts: sourceFacts, hypervisor: FakeHypervisor(lab: lab, host: "src"), agent: sourceAgent),
            destination: MigrationHost(
                name: "dst", facts: destinationFacts, hypervisor: FakeHypervisor(lab: lab, host: "dst"),
                agent: destinationAgent ?? destinationForRun, libvirtURI: "fake://dst/system"),
            policy: policy, vm: vm, bandwidthMiBPerSecond: 1250, forcedChecks: force, events: events.sink,
            abort: abort, historyPatience: .seconds(5), clock: clock)
    }

    func reconciler(staleAfterSeconds: Double = 0) -> Reconciler {
        Reconciler(
            store: store, journal: journal,
            hosts: BenchHosts(lab: lab, agents: ["src": sourceAgent, "dst": destinationForRun]),
            staleAfterSeconds: staleAfterSeconds, events: events.sink, historyPatience: .seconds(5), clock: clock)
    }

    /// A repository policy with test-sized intervals and the migration limited to 1024 MiB/s.
    static func policy(
        _ name: String, completionSecondsPerGiB: Double = 600, onTimeout: TimeoutAction? = nil
    ) throws -> MigrationPolicy {
        let file = TestData.policies.appendingPathComponent("\(name).yaml")
        var policy = try MigrationPolicyFile.parseMigrationPolicy(try TestData.text(file), name: name, file: file.path)
        policy.monitorIntervalMilliseconds = 20
        policy.completionTimeoutSecondsPerGiB = completionSecondsPerGiB
        policy.bandwidthMiBPerSecond = 1024
        if let onTimeout { policy.onTimeout = onTimeout }
        return policy
    }

    /// What the fixed 300 ms policies' check refuses for a T4 vGPU (no dirty-page tracking);
    /// forced where a test needs a job that cannot converge.
    static let overFixedCap: Set<String> = ["downtime.estimate", "gpu.dirty-tracking"]
}

/// The devices a destination agent made, which its QEMU can open.
final class MadeDevices: Sendable {
    private let devices = Mutex<Set<String>>([])
    func insert(_ ids: [String]) { devices.withLock { $0.formUnion(ids) } }
    func contains(_ id: String) -> Bool { devices.withLock { $0.contains(id) } }
}

/// An agent as `agent`, telling `afterReserve` of each reservation made and `beforeRelease`
/// of each release before it is asked.
struct ObservedAgent: HostAgent {
    var agent: any HostAgent
    var afterReserve: @Sendable (Reservation) async -> Void = { _ in }
    var beforeRelease: @Sendable () async -> Void = {}

    func reserve(_ request: ReservationRequest) async throws -> Reservation {
        let reservation = try await agent.reserve(request)
        await afterReserve(reservation)
        return reservation
    }
    func reservations() async throws -> [Reservation] { try await agent.reservations() }
    func release(_ id: String) async throws -> Reservation {
        await beforeRelease()
        return try await agent.release(id)
    }
    func commit(_ id: String) async throws -> Reservation { try await agent.commit(id) }
    func retire(_ id: String) async throws -> Reservation { try await agent.retire(id) }
}

/// The hosts of a bench: its fake hypervisors and in-memory agents.
struct BenchHosts: HostDirectory {
    var lab: FakeLibvirt
    var agents: [String: any HostAgent]

    func hypervisor(of host: String) async throws(MigrationEngineError) -> any Hypervisor {
        FakeHypervisor(lab: lab, host: host)
    }

    func agent(of host: String) throws(MigrationEngineError) -> (any HostAgent)? { agents[host] }
}

/// The engine's events, in order.
final class EventLog: Sendable {
    private let items = Mutex<[MigrationRunEvent]>([])
    var sink: MigrationEventSink { MigrationEventSink { [self] event in items.withLock { $0.append(event) } } }
    var all: [MigrationRunEvent] { items.withLock { $0 } }
    /// The notices' texts.
    var notices: [String] {
        all.compactMap { if case .notice(_, let text) = $0 { text } else { nil } }
    }
}
