import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

/// A real `vgpu-migrate migrate` is stopped at a point of the migration (VGPU_MIGRATE_TEST_PAUSE)
/// and SIGKILLed there; a new `vgpu-migrate reconcile` process then settles the record.
@Suite(
    "coordinator SIGKILLed at each state, then reconciled (real libvirt daemons, QEMU, agent)", .serialized,
    .twoHostLab, .tags(.lab)
)
struct CrashAtEachStateLabTests {
    /// Starts `vgpu-migrate migrate` paused at `point` (or not paused, when nil), waits for the
    /// line `until` (by default: paused there) and kills it; returns the migration id.
    private func killedMigration(
        _ vm: String, at point: String?, arguments: [String], in directory: URL,
        until: ((Substring) -> Bool)? = nil
    ) throws -> String {
        let migration = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"), ["migrate", vm, "--from", "src", "--to", "dst"] + arguments,
            directory: directory, environment: point.map { ["VGPU_MIGRATE_TEST_PAUSE": $0] } ?? [:])
        defer { migration.stop() }
        let reached = migration.waitForLine(within: 60, where: until ?? { $0.hasPrefix("paused at \(point ?? "") ") })
        #expect(reached != nil, "\(migration.standardOutput)\(migration.standardError)")
        migration.kill()
        return try #require(migrationID(of: migration))
    }

    private func reconcile(_ arguments: [String]) throws -> MigrationRecord {
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["reconcile", "--stale-after", "0", "--json"] + arguments)
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        let settled = try decodedJSON([MigrationRecord].self, from: outcome.standardOutput)
        return try #require(settled.only, "\(outcome.standardOutput)")
    }

    @Test(
        "a vGPU VM killed before the switchover: failed, and the destination holds no reservation for it",
        arguments: ["requested", "checking", "reserving", "reserved", "migrating"])
    func killedBeforeSwitchover(point: String) async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "crash-\(point)"
        defer { lab.removeGuest(vm) }
        // The fixture T4's vGPU on src; not started (no real mdev exists here), so the checks
        // that need a running VM with QEMU 8.1 are forced.
        for outcome in try lab.defineGuest(
            vm, memoryMiB: 256, mdev: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", start: false)
        {
            #expect(outcome.status == 0, "\(outcome.standardError)")
        }
        let (agent, url, tree) = try startAgent(fixture: "t4-b", in: directory)
        defer { agent.stop() }
        let inventory = try labInventory(lab, in: directory, destinationAgent: url)
        let database = directory.appendingPathComponent("history.sqlite").path
        let common = ["--inventory", inventory, "--database", database, "--policies", TestData.policies.path]

        let id = try killedMigration(
            vm, at: point, arguments: common + ["--force", "vm.exists,versions.qemu"], in: directory)
        let store = try SQLiteHistoryStore(path: database)
        let left = try #require(try await store.record(id: id))
        #expect(left.state.rawValue == (point == "reserved" ? "reserving" : point))
        let client = operatorClient(url)
        let heldAtKill = try await client.reservations().filter { $0.request.owner == id && $0.state == .active }
        #expect(heldAtKill.count == (["reserved", "migrating"].contains(point) ? 1 : 0))

        let record = try reconcile(common)
        #expect(record.id == id)
        #expect(record.state == .failed)
        #expect(record.events.suffix(2).map(\.to) == [.unknown, .failed])
        #expect(
            record.events.last?.reason.hasPrefix("reconciled after the coordinator stopped in \(left.state.rawValue)")
                == true)
        #expect(try await client.reservations().filter { $0.request.owner == id && $0.state == .active }.isEmpty)
        if !heldAtKill.isEmpty {
            #expect(record.reservation?.state == .released)
            #expect(record.intents.last?.action == .release)
        }
        let devices =
            mdevs(in: tree)
        #expect(devices.isEmpty, "\(devices)")
        #expect(try lab.virsh(lab.sourceURI, ["dominfo", vm]).status == 0)
        #expect(try lab.virsh(lab.destinationURI, ["dominfo", vm]).status != 0)
    }

    @Test("killed in completing (the VM already runs on dst): completed")
    func killedWhileCompleting() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("crash-completing") }
        let start = try lab.startCheckingGuest(
            "crash-completing", dirtyMiBPerSecond: 0, workingSetMiB: 16, memoryMiB: 128)
        #expect(start.status == 0, "\(start.standardError)")
        let database = directory.appendingPathComponent("history.sqlite").path
        let common = [
            "--inventory", try labInventory(lab, in: directory), "--database", database, "--policies",
            TestData.policies.path,
        ]
        let id = try killedMigration("crash-completing", at: "completing", arguments: common, in: directory)
        #expect(try runningOn(lab, "crash-completing") == ["dst"])
        let record = try reconcile(common)
        #expect(record.id == id)
        #expect(record.state == .completed)
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .unknown, .completed])
        #expect(record.finalStats?.downtimeMilliseconds != nil)
        // Reading the completed job's statistics left them for the operator's own tools.
        let completedJob = try lab.virsh(lab.destinationURI, ["domjobinfo", "crash-completing", "--completed"])
        #expect(completedJob.standardOutput.contains("Time elapsed:"), "\(completedJob.standardOutput)")
    }

    @Test("killed while the migration job runs: reconcile watches the job to its end → completed, 0 page errors")
    func killedWhileJobRuns() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "crash-running"
        defer { lab.removeGuest(vm) }
        // 32 MiB written at 4 MiB/s: the job runs for several seconds after the kill.
        let options = try await slowMigrationOptions(lab, vm: vm, in: directory)
        let common = Array(options.dropFirst(2))  // without --policy slow
        // Killed once a job sample shows the migration job running.
        let id = try killedMigration(
            vm, at: nil, arguments: options, in: directory,
            until: { $0.hasPrefix("  ") && $0.contains("remaining") })
        let lastOnSource = lab.guestReports(vm, on: "src").last?.tick ?? 0
        let record = try reconcile(common)
        #expect(record.id == id)
        #expect(record.state == .completed)
        #expect(record.events.suffix(2).map(\.to) == [.unknown, .completed])
        #expect(record.events.last?.reason.contains("was watched to its end; the VM runs on dst") == true)
        // The reconciler recorded the job's progress while it watched.
        #expect(record.sampleCount >= 2, "\(record.sampleCount)")
        #expect(try runningOn(lab, vm) == ["dst"])
        #expect(
            await eventually(within: 60) { lab.guestReports(vm, on: "dst").contains { $0.tick > lastOnSource } })
        let reports = lab.guestReports(vm, on: "dst")
        #expect(!reports.isEmpty && reports.allSatisfy { $0.errors == 0 }, "\(reports)")
    }
}
