import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

/// The operator token of the agents `startAgent` starts (also in the file `token`, for inventories).
let agentToken = "op-0123456789abcdef-token"

/// A real vgpu-agent over a copy of a fixture tree.
func startAgent(fixture name: String, in directory: URL) throws -> (RunningProcess, url: String, tree: URL) {
    let tree = directory.appendingPathComponent("tree-\(name)")
    try FileManager.default.copyItem(at: URL(fileURLWithPath: fixture(name)), to: tree)
    try "operator \(agentToken)\n".write(
        to: directory.appendingPathComponent("tokens"), atomically: true, encoding: .utf8)
    try "\(agentToken)\n".write(
        to: directory.appendingPathComponent("token"), atomically: true, encoding: .utf8)
    return try launchAgent(fixture: name, in: directory)
}

/// Starts a vgpu-agent over the tree and journal `startAgent(fixture:in:)` set up (again, after
/// it stopped: the agent finds its reservations in the journal).
func launchAgent(fixture name: String, in directory: URL) throws -> (RunningProcess, url: String, tree: URL) {
    let tree = directory.appendingPathComponent("tree-\(name)")
    let agent = try RunningProcess(
        try ProductRunner.executable("vgpu-agent"),
        [
            "--sysfs-root", tree.path, "--listen", "127.0.0.1:0", "--state-dir",
            directory.appendingPathComponent("agent-state-\(name)").path,
            "--tokens", directory.appendingPathComponent("tokens").path, "--insecure-http", "--policies",
            TestData.policies.path,
        ], directory: directory)
    let line = try #require(agent.waitForLine { $0.hasPrefix("vgpu-agent listening on ") }, "\(agent.standardError)")
    return (agent, String(line.dropFirst("vgpu-agent listening on ".count)), tree)
}

/// A client of an agent `startAgent` started, with the operator token.
func operatorClient(_ url: String) -> AgentClient {
    AgentClient(endpoint: AgentEndpoint(baseURL: url, token: agentToken))
}

/// A vGPU on the agent's host as an earlier migration there leaves it: reserved and committed by
/// the agent.
func earlierMigrationsVGPU(_ url: String) async throws -> Reservation {
    let client = operatorClient(url)
    let made = try await client.reserve(
        ReservationRequest(
            typeID: "nvidia-232", count: 1, owner: "an-earlier-migration", leaseSeconds: 3600,
            idempotencyKey: "earlier/reserve"))
    return try await client.commit(made.id)
}

/// The mdevs that exist in an agent's tree (none when the folder is missing).
func mdevs(in tree: URL) -> [String] {
    (try? FileManager.default.contentsOfDirectory(atPath: tree.appendingPathComponent("sys/bus/mdev/devices").path))
        ?? []
}

/// A record as a coordinator that died would have left it, last updated ten minutes ago.
func abandoned(vm: String, state: MigrationState, intents: [Intent.Action]) throws -> MigrationRecord {
    let start = Date().addingTimeInterval(-600)
    var record = MigrationRecord(
        id: UUID().uuidString.lowercased(), vm: vm, source: "src", destination: "dst", policy: "adaptive", at: start)
    let path: [MigrationState] = [.checking, .reserving, .migrating, .completing]
    for step in path {
        try record.transition(to: step, reason: "step", at: start)
        if step == state { break }
    }
    record.intents = intents.map { Intent(time: start, action: $0) }
    return record
}

/// Records `record` as begun in `store` and reserves one vGPU for it on the agent at `url`, as its
/// coordinator did before it stopped.
func beginWithReservation(_ record: MigrationRecord, in store: any HistoryStore, agent url: String) async throws
    -> Reservation
{
    try await store.begin(record)
    return try await operatorClient(url).reserve(
        ReservationRequest(
            typeID: "nvidia-232", count: 1, owner: record.id, leaseSeconds: 3600,
            idempotencyKey: "\(record.id)/reserve"))
}

@Suite("reconcile: abandoned migrations end settled, nothing left reserved")
struct ReconcileTests {
    @Test("an abandoned migration that had reserved: failed, its reservation released, the device gone")
    func releasesReservation() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (agent, url, tree) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        let database = directory.appendingPathComponent("history.sqlite").path
        let store = try SQLiteHistoryStore(path: database)
        let record = try abandoned(vm: "vm-t4", state: .reserving, intents: [.reserve])
        let reservation = try await beginWithReservation(record, in: store, agent: url)
        let client = operatorClient(url)
        try """
        hosts:
          src:
            sysfs_root: \(fixture("t4-a"))
          dst:
            agent_url: \(url)
            credentials: token
        """.write(to: directory.appendingPathComponent("hosts.yaml"), atomically: true, encoding: .utf8)
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "reconcile", "--inventory", directory.appendingPathComponent("hosts.yaml").path, "--database", database,
                "--policies", TestData.policies.path,
            ])
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(
            outcome.standardOutput.contains(
                "\(record.id): failed (reconciled after the coordinator stopped in reserving"))
        let settled = try #require(try await store.record(id: record.id))
        #expect(settled.state == .failed)
        #expect(settled.events.suffix(2).map(\.to) == [.unknown, .failed])
        #expect(settled.reservation?.state == .released)
        #expect(try await client.reservation(reservation.id).state == .released)
        let devices =
            mdevs(in: tree)
        #expect(devices.isEmpty)
        let again = try ProductRunner.run(
            "vgpu-migrate",
            [
                "reconcile", "--inventory", directory.appendingPathComponent("hosts.yaml").path, "--database", database,
                "--policies", TestData.policies.path,
            ])
        #expect(again.standardOutput == "Nothing to reconcile.\n")
    }

    @Test("a migration still being driven (recently updated) is left to its coordinator")
    func leavesLiveOnes() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("history.sqlite").path
        let store = try SQLiteHistoryStore(path: database)
        var record = MigrationRecord(
            id: UUID().uuidString.lowercased(), vm: "vm-live", source: "src", destination: "dst", policy: "adaptive",
            at: Date())
        try record.transition(to: .checking, reason: "pre-flight", at: Date())
        try await store.begin(record)
        try "hosts:\n  src:\n    sysfs_root: \(fixture("t4-a"))\n  dst:\n    sysfs_root: \(fixture("t4-b"))\n".write(
            to: directory.appendingPathComponent("hosts.yaml"), atomically: true, encoding: .utf8)
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "reconcile", "--inventory", directory.appendingPathComponent("hosts.yaml").path, "--database", database,
                "--policies", TestData.policies.path,
            ])
        #expect(outcome.status == 0)
        #expect(outcome.standardOutput.contains("left to its coordinator"))
        #expect(try await store.record(id: record.id)?.state == .checking)
    }

    @Test("neither host answers after the migration started: the record stays unknown, reconcile and migrate exit 3")
    func neitherHostAnswers() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (agent, url, tree) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        let database = directory.appendingPathComponent("history.sqlite").path
        let store = try SQLiteHistoryStore(path: database)
        let record = try abandoned(vm: "vm-dark", state: .migrating, intents: [.reserve, .startMigration])
        let reservation = try await beginWithReservation(record, in: store, agent: url)
        let client = operatorClient(url)
        // Both daemons' sockets are missing: libvirt cannot connect to either host.
        let inventory = directory.appendingPathComponent("hosts.yaml").path
        try """
        hosts:
          src:
            sysfs_root: \(fixture("t4-a"))
            libvirt_uri: qemu+unix:///system?socket=\(directory.path)/no-such-src.sock
          dst:
            libvirt_uri: qemu+unix:///system?socket=\(directory.path)/no-such-dst.sock
            agent_url: \(url)
            credentials: token
        """.write(toFile: inventory, atomically: true, encoding: .utf8)

        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            ["reconcile", "--inventory", inventory, "--database", database, "--policies", TestData.policies.path])

        #expect(outcome.status == 3, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("\(record.id): unknown (cannot tell where the VM runs: neither host"))
        #expect(outcome.standardError.contains("not settled, left unknown: \(record.id)"), "\(outcome.standardError)")
        let kept = try #require(try await store.record(id: record.id))
        #expect(kept.state == .unknown)
        #expect(kept.intents.map(\.action) == [.reserve, .startMigration])
        #expect(try await client.reservation(reservation.id).state == .active)
        #expect(mdevs(in: tree) == reservation.devices.map(\.id))

        // A new migration of the VM is refused until the earlier one is settled.
        let migrate = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "vm-dark", "--from", "src", "--to", "dst", "--inventory", inventory, "--database", database,
                "--policies", TestData.policies.path,
            ])
        #expect(migrate.status == 3, "\(migrate.standardOutput)\(migrate.standardError)")
        #expect(
            migrate.standardError.contains("an earlier migration of vm-dark, \(record.id), has no clear outcome"),
            "\(migrate.standardError)")
        #expect(try await client.reservation(reservation.id).state == .active)
    }
}

extension Array {
    /// The single element, or nil when there are none or several.
    var only: Element? { count == 1 ? first : nil }
}
