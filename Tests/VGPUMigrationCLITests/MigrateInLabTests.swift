import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

/// The lab as an inventory: its daemons (src, dst, and spare when the lab has it), fixture T4
/// trees as their GPUs, data over the lab's link.
/// With `destinationAgent` (`sourceAgent`), dst's (src's) GPUs come from that agent (token in
/// the file `token`).
func labInventory(_ lab: Lab, in directory: URL, destinationAgent: String? = nil, sourceAgent: String? = nil) throws
    -> String
{
    let file = directory.appendingPathComponent("hosts.yaml")
    let destinationGPUs =
        destinationAgent.map { "agent_url: \($0)\n    credentials: token" } ?? "sysfs_root: \(fixture("t4-b"))"
    let sourceGPUs =
        sourceAgent.map { "agent_url: \($0)\n    credentials: token" } ?? "sysfs_root: \(fixture("t4-a"))"
    try """
    hosts:
      src:
        libvirt_uri: \(lab.sourceURI)
        \(sourceGPUs)
        migration_address: \(lab.sourceAddress)
      dst:
        libvirt_uri: \(lab.destinationURI)
        \(destinationGPUs)
        migration_address: \(lab.destinationAddress)
    """.appending(spareHost(lab)).write(to: file, atomically: true, encoding: .utf8)
    return file.path
}

/// The lab's third host in the inventory, when it has one: a copy of dst.
private func spareHost(_ lab: Lab) -> String {
    guard let uri = lab.spareURI, let address = lab.spareAddress else { return "" }
    return """

          spare:
            libvirt_uri: \(uri)
            sysfs_root: \(fixture("t4-b"))
            migration_address: \(address)
        """
}

/// Defines and starts a guest on the lab's source, expecting both to succeed.
func startLabGuest(_ lab: Lab, name: String, memoryMiB: Int) throws {
    for outcome in try lab.defineGuest(name, memoryMiB: memoryMiB) {
        #expect(outcome.status == 0, "\(outcome.standardError)")
    }
}

/// The shipped policies plus one named `name` derived from `base` with `changes` applied.
func policiesWith(_ name: String, from base: String, in directory: URL, _ changes: [(String, String)]) throws -> String
{
    let folder = directory.appendingPathComponent("policies")
    try FileManager.default.copyItem(at: TestData.policies, to: folder)
    var text = try TestData.text(TestData.policies.appendingPathComponent("\(base).yaml"))
    for (old, new) in changes { text = text.replacingOccurrences(of: old, with: new) }
    try text.write(to: folder.appendingPathComponent("\(name).yaml"), atomically: true, encoding: .utf8)
    return folder.path
}

func runningOn(_ lab: Lab, _ name: String) throws -> [String] {
    var hosts: [String] = []
    let spare = lab.spareURI.map { [("spare", $0)] } ?? []
    for (host, uri) in [("src", lab.sourceURI), ("dst", lab.destinationURI)] + spare {
        if try lab.virsh(uri, ["domstate", name]).standardOutput.hasPrefix("running") { hosts.append(host) }
    }
    return hosts
}

@Suite("migrate in the two-host lab (real libvirt daemons and QEMU)", .serialized, .twoHostLab, .tags(.lab))
struct MigrateInLabTests {
    @Test("an idle guest migrates src → dst and back; the history shows every transition")
    func thereAndBack() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try startLabGuest(lab, name: "e2e-idle", memoryMiB: 256)
        let inventory = try labInventory(lab, in: directory)
        let database = directory.appendingPathComponent("history.sqlite").path
        let common = ["--inventory", inventory, "--database", database, "--policies", TestData.policies.path]

        let there = try ProductRunner.run(
            "vgpu-migrate", ["migrate", "e2e-idle", "--from", "src", "--to", "dst"] + common)
        #expect(there.status == 0, "\(there.standardOutput)\(there.standardError)")
        #expect(try runningOn(lab, "e2e-idle") == ["dst"])
        let back = try ProductRunner.run(
            "vgpu-migrate", ["migrate", "e2e-idle", "--from", "dst", "--to", "src", "--json"] + common)
        #expect(back.status == 0, "\(back.standardError)")
        #expect(try runningOn(lab, "e2e-idle") == ["src"])
        let record = try decodedJSON(MigrationRecord.self, from: back.standardOutput)
        #expect(record.state == .completed)
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .completed])
        #expect(record.finalStats?.downtimeMilliseconds != nil)
        #expect(record.intents.map(\.action) == [.startMigration])

        let history = try ProductRunner.run(
            "vgpu-migrate", ["history", "--database", database, "--vm", "e2e-idle", "--json"])
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(history.standardOutput.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["status"] as? String } == ["completed", "completed"])
        #expect(rows.map { "\($0["source"] ?? "")→\($0["destination"] ?? "")" } == ["dst→src", "src→dst"])
    }

    @Test("abort ID from another process during a running migration: cancelled, guest on src")
    func abortFromAnotherShell() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (migration, inventory, database, _) = try startCrawlingMigration(
            lab, vm: "e2e-abort", memoryMiB: 2048, in: directory)
        defer { migration.stop() }
        let line = try #require(migration.waitForLine { $0.hasPrefix("migrating (") }, "\(migration.standardError)")
        #expect(line.contains("2048 MiB RAM"))
        let id = try #require(migrationID(of: migration))
        let abort = try ProductRunner.run(
            "vgpu-migrate", ["abort", String(id), "--inventory", inventory, "--database", database])
        #expect(abort.status == 0, "\(abort.standardError)")
        #expect(migration.waitForLine(within: 60) { $0.hasPrefix("cancelled: ") } != nil, "\(migration.standardOutput)")
        let show = try ProductRunner.run("vgpu-migrate", ["show", String(id), "--database", database, "--json"])
        let record = try decodedJSON(MigrationRecord.self, from: show.standardOutput)
        #expect(record.state == .cancelled)
        #expect(try runningOn(lab, "e2e-abort") == ["src"])
        #expect(try lab.virsh(lab.destinationURI, ["dominfo", "e2e-abort"]).status != 0)
    }

    @Test("a policy that runs out of time aborts: failed, guest still running on src")
    func timeoutAborts() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try startLabGuest(lab, name: "e2e-timeout", memoryMiB: 2048)
        // Fixed 300 ms, 1 MiB/s, 1 s per GiB: the completion timeout (2 s) comes long before the end.
        let policies = try policiesWith(
            "tight", from: "fixed-300ms", in: directory,
            [
                ("completion_timeout_s_per_gib: 800", "completion_timeout_s_per_gib: 1"),
                ("  on_timeout: abort", "  on_timeout: abort\n  bandwidth_mib_per_s: 1"),
            ])
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "e2e-timeout", "--from", "src", "--to", "dst", "--policy", "tight", "--inventory",
                try labInventory(lab, in: directory), "--database", directory.appendingPathComponent("h.sqlite").path,
                "--policies", policies,
            ])
        #expect(outcome.status == 1)
        #expect(
            outcome.standardOutput.contains("aborting: completion timeout: 2 s passed"), "\(outcome.standardOutput)")
        #expect(outcome.standardOutput.contains("failed: aborted by the policy: completion timeout"))
        #expect(try runningOn(lab, "e2e-timeout") == ["src"])
    }

    @Test("SIGKILL of the coordinator while migrating, then reconcile --abort-running: failed, guest on src, job gone")
    func killedWhileMigrating() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (migration, inventory, database, policies) = try startCrawlingMigration(
            lab, vm: "e2e-killed", memoryMiB: 2048, in: directory)
        #expect(migration.waitForLine { $0.hasPrefix("migrating (") } != nil, "\(migration.standardError)")
        migration.kill()
        let reconcile = try ProductRunner.run(
            "vgpu-migrate",
            [
                "reconcile", "--stale-after", "0", "--abort-running", "--inventory", inventory, "--database",
                database, "--policies", policies, "--json",
            ])
        #expect(reconcile.status == 0, "\(reconcile.standardError)")
        let settled = try decodedJSON([MigrationRecord].self, from: reconcile.standardOutput)
        let record = try #require(settled.only)
        #expect(record.state == .failed)
        #expect(record.events.suffix(2).map(\.to) == [.unknown, .failed])
        #expect(try runningOn(lab, "e2e-killed") == ["src"])
        // No migration job is left running for the VM (the aborted job may take a moment to end).
        let jobGone = try await eventually(within: 30) {
            try lab.virsh(lab.sourceURI, ["domjobinfo", "e2e-killed"]).standardOutput.contains("None")
        }
        let jobInfo = try lab.virsh(lab.sourceURI, ["domjobinfo", "e2e-killed"])
        #expect(jobGone, "\(jobInfo.standardOutput)\(jobInfo.standardError)")
    }

    @Test(
        "a vGPU VM: the destination agent reserves, the XML is rewritten; when libvirt refuses, the reservation is released"
    )
    func vgpuReservationReleasedOnFailure() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // Defined with the fixture T4's vGPU on src, not started: no real mdev exists here.
        for outcome in try lab.defineGuest(
            "e2e-vgpu", memoryMiB: 256, mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", start: false)
        {
            #expect(outcome.status == 0, "\(outcome.standardError)")
        }
        let (agent, url, tree) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        let inventory = URL(fileURLWithPath: try labInventory(lab, in: directory, destinationAgent: url))
        let database = directory.appendingPathComponent("history.sqlite").path
        let refused = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "e2e-vgpu", "--from", "src", "--to", "dst", "--inventory", inventory.path, "--database",
                database,
                "--policies", TestData.policies.path,
            ])
        #expect(refused.status == 1)
        #expect(
            refused.standardOutput.contains("failed: pre-flight check failed: vm.exists"), "\(refused.standardOutput)")

        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "e2e-vgpu", "--from", "src", "--to", "dst", "--inventory", inventory.path, "--database",
                database,
                "--policies", TestData.policies.path, "--force", "vm.exists,versions.qemu", "--json",
            ])
        #expect(outcome.status == 1, "\(outcome.standardError)")
        let record = try decodedJSON(MigrationRecord.self, from: outcome.standardOutput)
        #expect(record.state == .failed)
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .failed])
        #expect(record.events[1].reason == "checks passed, forced past vm.exists, versions.qemu")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        let reservation = try #require(record.reservation)
        #expect(reservation.state == .released)
        #expect(reservation.devices.map(\.typeID) == ["nvidia-232"])
        #expect(reservation.devices.first?.function == DeviceAddress("0000:3b:00.0"))
        let devices =
            mdevs(in: tree)
        #expect(devices.isEmpty)
        #expect(outcome.standardError.contains("migrating: reserved 1 vGPU(s) on dst"))
    }

    @Test(
        "reconcile of a migration whose VM already runs on the destination: completed, reservation committed, device kept",
        arguments: [
            // Stopped while the job ran, or after the switchover with the commit intended but not
            // done: what a vGPU VM's coordinator killed in completing leaves behind.
            (MigrationState.migrating, [Intent.Action.reserve, .startMigration]),
            (.completing, [.reserve, .startMigration, .commit]),
        ])
    func reconcileCommits(state: MigrationState, intents: [Intent.Action]) async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("e2e-moved") }
        try startLabGuest(lab, name: "e2e-moved", memoryMiB: 256)
        let (agent, url, tree) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        let inventory = URL(fileURLWithPath: try labInventory(lab, in: directory, destinationAgent: url))
        let database = directory.appendingPathComponent("history.sqlite").path
        // The switchover happened (the VM runs on dst), then the coordinator died before committing.
        let moved = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "e2e-moved", "--from", "src", "--to", "dst", "--inventory", inventory.path, "--database",
                database, "--policies", TestData.policies.path,
            ])
        #expect(moved.status == 0, "\(moved.standardOutput)\(moved.standardError)")
        let store = try SQLiteHistoryStore(path: database)
        let record = try abandoned(vm: "e2e-moved", state: state, intents: intents)
        let reservation = try await beginWithReservation(record, in: store, agent: url)
        let client = operatorClient(url)

        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "reconcile", "--inventory", inventory.path, "--database", database, "--policies",
                TestData.policies.path,
            ])
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        let settled = try #require(try await store.record(id: record.id))
        #expect(settled.state == .completed)
        #expect(settled.events.last?.reason.contains("the VM runs on dst") == true)
        #expect(settled.reservation?.state == .committed)
        #expect(try await client.reservation(reservation.id).state == .committed)
        let devices =
            mdevs(in: tree)
        #expect(devices == reservation.devices.map(\.id))
    }
}

extension MigrateInLabTests {
    @Test(
        "reconcile after a switchover gives back the source vGPU its agent created; a vGPU made by hand is left alone"
    )
    func reconcileGivesBackSourceVGPU() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try startLabGuest(lab, name: "e2e-giveback", memoryMiB: 256)
        let (sourceAgent, sourceURL, sourceTree) = try startAgent(fixture: "t4-a", in: directory)
        defer { sourceAgent.stop() }
        let (destinationAgent, destinationURL, _) = try startAgent(fixture: "t4-b", in: directory)
        defer { destinationAgent.stop() }
        let inventory = try labInventory(
            lab, in: directory, destinationAgent: destinationURL, sourceAgent: sourceURL)
        let database = directory.appendingPathComponent("history.sqlite").path
        let moved = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", "e2e-giveback", "--from", "src", "--to", "dst", "--inventory", inventory, "--database",
                database, "--policies", TestData.policies.path,
            ])
        #expect(moved.status == 0, "\(moved.standardOutput)\(moved.standardError)")
        // The VM's vGPU on src, as an earlier migration to src would have left it: created and
        // committed by src's agent. Next to it the fixture's vGPU made by hand (5b1f0a7c-...).
        let client = operatorClient(sourceURL)
        let earlier = try await earlierMigrationsVGPU(sourceURL)
        let device = try #require(earlier.devices.first)
        let handMade = "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10"
        // The coordinator died after the switchover, before giving anything back.
        var record = try abandoned(vm: "e2e-giveback", state: .migrating, intents: [.reserve])
        record.intents.append(
            Intent(
                time: record.createdAt, action: .startMigration,
                details: ["to": lab.destinationURI, "source_vgpus": "mdev:\(device.id),mdev:\(handMade)"]))
        let store = try SQLiteHistoryStore(path: database)
        try await store.begin(record)

        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            ["reconcile", "--inventory", inventory, "--database", database, "--policies", TestData.policies.path])
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        let settled = try #require(try await store.record(id: record.id))
        #expect(settled.state == .completed)
        #expect(
            settled.events.last?.details["source_vgpu"]
                == "released mdev \(device.id) on src; mdev \(handMade) stays on src: not created by its agent, left as it is",
            "\(settled.events.last?.details ?? [:])")
        #expect(settled.intents.last?.action == .releaseSource)
        #expect(try await client.reservation(earlier.id).state == .released)
        let devices = mdevs(in: sourceTree)
        #expect(devices == [handMade])
    }
}

/// Polls `condition` for up to `seconds` (state that changes in the background); no timing asserted.
func eventually(within seconds: Double, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(100))
    }
    return try await condition()
}
