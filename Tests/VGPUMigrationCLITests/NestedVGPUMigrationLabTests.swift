import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@testable import VGPUMigrationCLI

#if canImport(Glibc)
    import Glibc
#endif

/// The vGPU path on real mediated devices: two nested hosts (Debian's 6.12 kernel under TCG) with
/// the kernel's sample driver mtty, libvirt 11 and QEMU 10, and the project's vgpu-agent on their
/// real `/sys`; the coordinator runs on this machine (`scripts/nested-lab`).
@Suite(
    "vGPU path on real mdevs (nested hosts, mtty, libvirt 11, QEMU 10, real agents)", .serialized, .nestedVFIOLab,
    .tags(.lab))
struct NestedVGPUMigrationLabTests {
    /// `vgpu-migrate` as the tests run it against the lab: in the lab's namespace, with the lab's
    /// inventory, a history of the test's own (VGPU_MIGRATE_DATABASE) and a policies directory.
    struct Coordinator {
        var lab: NestedLab
        var directory: URL
        var policies = TestData.policies.path
        /// The history: a SQLite file in the test's directory unless a PostgreSQL URL is given.
        var database: String? = nil

        var databaseLocation: String { database ?? directory.appendingPathComponent("history.sqlite").path }
        /// Where records wait while the history cannot be written (VGPU_MIGRATE_JOURNAL).
        var journalRoot: URL { directory.appendingPathComponent("journal") }
        var journal: DirectoryRecordJournal {
            DirectoryRecordJournal(root: journalRoot, storeLocation: databaseLocation)
        }

        var environment: [String: String] {
            ["VGPU_MIGRATE_DATABASE": databaseLocation, "VGPU_MIGRATE_JOURNAL": journalRoot.path]
        }
        var inventory: [String] { ["--inventory", lab.inventory] }

        /// `migrate VM --from SOURCE --to DESTINATION ARGUMENTS` to completion.
        func migrate(_ vm: String, from source: String, to destination: String, _ arguments: [String] = [])
            throws -> ProcessOutcome
        {
            try lab.coordinator(
                ["migrate", vm, "--from", source, "--to", destination, "--policies", policies] + inventory + arguments,
                environment: environment)
        }

        /// The same in the background.
        func start(_ vm: String, from source: String, to destination: String, _ arguments: [String] = []) throws
            -> RunningProcess
        {
            try lab.startCoordinator(
                ["migrate", vm, "--from", source, "--to", destination, "--policies", policies] + inventory + arguments,
                directory: directory, environment: environment)
        }

        func check(_ vm: String) throws -> ProcessOutcome {
            try lab.coordinator(
                ["check", vm, "--from", "src", "--to", "dst", "--json", "--policies", policies] + inventory,
                environment: environment)
        }

        func abort(_ id: String) throws -> ProcessOutcome {
            try lab.coordinator(["abort", id] + inventory, environment: environment)
        }

        func reconcile() throws -> ProcessOutcome {
            try lab.coordinator(
                ["reconcile", "--stale-after", "0", "--json", "--policies", policies] + inventory,
                environment: environment)
        }

        /// `history` or `show` (they read only the history), in the lab's namespace, where a
        /// PostgreSQL history of the test's listens.
        func read(_ arguments: [String]) throws -> ProcessOutcome {
            try lab.coordinator(arguments, environment: environment)
        }

        func record(_ id: String) throws -> MigrationRecord {
            try decodedJSON(MigrationRecord.self, from: try read(["show", id, "--json"]).standardOutput)
        }
    }

    /// The shipped policies plus `slow`: 4 MiB/s, so the parked guest's 32 MiB take seconds to move.
    func slowPolicies(in directory: URL) throws -> String {
        try policiesWith(
            "slow", from: "adaptive", in: directory,
            [("  on_timeout: force-switchover", "  on_timeout: force-switchover\n  bandwidth_mib_per_s: 4")])
    }

    /// Starts the parked guest `vm` on src with an mdev from its agent and, in the background, its
    /// migration to dst under the policy `slow`; returns once 10% of its memory is sent.
    func startSlowMigration(
        _ lab: NestedLab, _ vm: String, in directory: URL, database: String? = nil, _ arguments: [String] = []
    ) throws -> (Coordinator, mdev: String, RunningProcess) {
        let coordinator = Coordinator(
            lab: lab, directory: directory, policies: try slowPolicies(in: directory), database: database)
        let mdev = try lab.startGuest(vm)
        let migration = try coordinator.start(vm, from: "src", to: "dst", ["--policy", "slow"] + arguments)
        #expect(waitForTransfer(migration, atLeast: 10), "\(migration.standardOutput)\(migration.standardError)")
        return (coordinator, mdev, migration)
    }

    /// Waits until the migration's progress shows at least `percent` of the guest's memory sent.
    func waitForTransfer(_ migration: RunningProcess, atLeast percent: Int) -> Bool {
        migration.waitForLine(within: 180) { line in
            guard line.hasPrefix("  migrating ("), let sent = line.range(of: "% sent") else { return false }
            let digits = line[..<sent.lowerBound].reversed().prefix { $0.isNumber }
            return Int(String(digits.reversed())).map { $0 >= percent } ?? false
        } != nil
    }

    /// Migrates `vm` with `vgpu-migrate migrate --json` and checks everything the vGPU path must
    /// leave behind; returns the mdev the VM carries on the destination.
    func migrateAndVerify(
        _ coordinator: Coordinator, _ vm: String, from source: String, to destination: String, carrying mdev: String
    ) throws -> String {
        let lab = coordinator.lab
        let outcome = try coordinator.migrate(vm, from: source, to: destination, ["--json"])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let record = try decodedJSON(MigrationRecord.self, from: outcome.standardOutput)
        #expect(record.state == .completed, "\(record.events.last?.reason ?? "")")
        #expect(
            record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .completed],
            "\(record.events.map(\.to))")
        // A new mdev, created on the destination by its agent writing to the real kernel.
        let reservation = try #require(record.reservation)
        #expect(reservation.host == destination && reservation.state == .committed)
        let moved = try #require(reservation.devices.only).id
        #expect(moved != mdev)
        #expect(reservation.devices.first?.function == .named("mtty"))
        #expect(try lab.mdevs(on: destination) == [moved])
        #expect(
            try lab.run(destination, "cat /sys/bus/mdev/devices/\(moved)/mdev_type/name").standardOutput
                == "Dual port serial\n")
        // The source's mdev was given back.
        #expect(try lab.mdevs(on: source).isEmpty)
        #expect(record.events.last?.details["source_vgpu"] == "released mdev \(mdev) on \(source)")
        // mdevctl: the committed mdev is defined where the VM runs, the released one nowhere.
        #expect(try lab.definedMdevs(on: destination) == [moved])
        #expect(try lab.definedMdevs(on: source).isEmpty)
        // The VM runs on the destination with its device: the rewritten XML, and QEMU's PCI bus.
        #expect(try lab.runningDomains(on: destination) == [vm])
        #expect(try lab.runningDomains(on: source).isEmpty)
        let xml = try lab.virsh(destination, ["dumpxml", vm]).standardOutput
        #expect(xml.contains("<address uuid='\(moved)'/>") && !xml.contains(mdev))
        #expect(xml.contains("x-device-dirty-page-tracking"), "the mtty override must survive the rewrite")
        let pci = try lab.virsh(destination, ["qemu-monitor-command", "--hmp", vm, "info pci"]).standardOutput
        #expect(pci.contains("PCI device 4348:3253") && pci.contains("id \"ua-mtty0\""), "\(pci)")
        // The device state moved: libvirt counted it, and mtty on the destination resumed it.
        #expect((record.finalStats?.vfioDataTransferredBytes ?? 0) > 0)
        let trace = try lab.run(destination, "dmesg | grep '\(moved)'").standardOutput
        #expect(trace.contains("mtty_step_state: 4 -> 1"), "RESUMING → STOP not in mtty's trace: \(trace)")
        return moved
    }

    @Test("a guest with an mtty mdev migrates src → dst → src: check, reserve, rewrite, move, commit, give back")
    func roundTrip() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-round"
        defer { lab.reset() }
        let coordinator = Coordinator(lab: lab, directory: directory)
        let first = try lab.startGuest(vm)
        #expect(try lab.mdevs(on: "src") == [first])
        #expect(try lab.definedMdevs(on: "src") == [first])

        let check = try coordinator.check(vm)
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        let report = try JSONDecoder().decode(CompatibilityReport.self, from: Data(check.standardOutput.utf8))
        for id in ["versions.libvirt", "versions.qemu", "versions.kernel", "vgpu.type-offered", "vgpu.capacity"] {
            #expect(report.findings.filter { $0.check == id }.allSatisfy { $0.severity == .pass }, "\(id)")
        }
        for id in ["gpu.board", "driver.version", "gpu.dirty-tracking"] {
            #expect(report.findings.first { $0.check == id }?.severity == .notApplicable, "\(id)")
        }

        let second = try migrateAndVerify(coordinator, vm, from: "src", to: "dst", carrying: first)
        let third = try migrateAndVerify(coordinator, vm, from: "dst", to: "src", carrying: second)
        #expect(third != first)

        let history = try coordinator.read(["history", "--json"])
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(history.standardOutput.utf8)) as? [[String: Any]])
        #expect(rows.map { $0["status"] as? String } == ["completed", "completed"])
        #expect(rows.map { "\($0["source"] ?? "") → \($0["destination"] ?? "")" } == ["dst → src", "src → dst"])
        let latest = try #require(rows.first?["id"] as? String)
        let shown = try coordinator.read(["show", latest])
        #expect(shown.standardOutput.contains("VFIO device state"), "\(shown.standardOutput)")
        #expect(shown.standardOutput.contains("\(third)  mtty-2 on mtty"), "\(shown.standardOutput)")
        for state in [
            "requested → checking", "checking → reserving", "reserving → migrating", "migrating → completing",
            "completing → completed",
        ] {
            #expect(shown.standardOutput.contains(state), "\(state)")
        }
    }

    @Test("abort ID mid-migration: cancelled, the guest runs on src with its mdev, dst's reservation released")
    func abortMidMigration() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-abort"
        defer { lab.reset() }
        let (coordinator, mdev, migration) = try startSlowMigration(lab, vm, in: directory)
        defer { migration.stop() }
        let id = try #require(migrationID(of: migration))
        let abort = try coordinator.abort(id)
        #expect(abort.status == 0, "\(abort.standardError)")
        #expect(migration.waitForExit(within: 180) == 1, "\(migration.standardOutput)\(migration.standardError)")
        #expect(migration.standardOutput.contains("cancelled: aborted by the operator"))

        let record = try coordinator.record(id)
        #expect(record.state == .cancelled)
        let reservation = try #require(record.reservation)
        #expect(reservation.state == .released)
        // The agent says so, and the kernel: the reserved mdev is gone from dst's real sysfs.
        let asked = try lab.agent("dst", get: "/v1/reservations/\(reservation.id)").standardOutput
        #expect(asked.contains("\"state\":\"released\""), "\(asked)")
        #expect(try lab.mdevs(on: "dst").isEmpty)
        #expect(try lab.definedMdevs(on: "dst").isEmpty)
        #expect(try lab.runningDomains(on: "dst").isEmpty)
        // The guest never left src, with the mdev it had.
        #expect(try lab.runningDomains(on: "src") == [vm])
        #expect(try lab.mdevs(on: "src") == [mdev])
        #expect(try lab.virsh("src", ["dumpxml", vm]).standardOutput.contains("<address uuid='\(mdev)'/>"))
    }

    @Test(
        "dst's libvirtd killed mid-migration: failed, the guest on src, the reservation released, nothing left on dst")
    func destinationDaemonKilled() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-dstkill"
        defer { lab.reset() }
        let (coordinator, mdev, migration) = try startSlowMigration(lab, vm, in: directory)
        defer { migration.stop() }
        #expect(try lab.run("dst", "kill -9 $(cat /run/libvirtd.pid)").status == 0)
        #expect(migration.waitForExit(within: 300) == 1, "\(migration.standardOutput)\(migration.standardError)")
        #expect(migration.standardOutput.contains("failed: "), "\(migration.standardOutput)")
        let id = try #require(migrationID(of: migration))
        let record = try coordinator.record(id)
        #expect(record.state == .failed)
        let reservation = try #require(record.reservation)
        // The incoming QEMU the dead daemon left behind still holds dst's new mdev: the kernel
        // would not remove it (the write to remove waits), so the agent does not try yet.
        #expect(reservation.state == .releasing, "\(record.events.last?.reason ?? "")")
        #expect(
            record.events.last?.reason.contains("is held open by process") == true,
            "\(record.events.last?.reason ?? "")")
        // The daemon comes back (a host's service manager would restart it) and ends the
        // incoming migration it lost; then the agent removes the mdev and releases the reservation.
        #expect(try lab.run("dst", "libvirtd --listen --daemon --pid-file /run/libvirtd.pid").status == 0)
        #expect(
            await eventually(within: 120) {
                (try? lab.agent("dst", get: "/v1/reservations/\(reservation.id)").standardOutput)?
                    .contains("\"state\":\"released\"") == true
            })
        #expect(try lab.mdevs(on: "dst").isEmpty)
        #expect(try lab.definedMdevs(on: "dst").isEmpty)
        #expect(try lab.runningDomains(on: "dst").isEmpty)
        #expect(try lab.run("dst", "pgrep -c qemu-system || true").standardOutput == "0\n")
        #expect(try lab.runningDomains(on: "src") == [vm])
        #expect(try lab.mdevs(on: "src") == [mdev])
    }

    @Test("the coordinator SIGKILLed mid-migration: reconcile settles it, nothing leaked on either host")
    func coordinatorKilled() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-crash"
        defer { lab.reset() }
        let (coordinator, mdev, migration) = try startSlowMigration(lab, vm, in: directory)
        defer { migration.stop() }
        let id = try #require(migrationID(of: migration))
        migration.kill()

        let reconcile = try coordinator.reconcile()
        #expect(reconcile.status == 0, "\(reconcile.standardOutput)\(reconcile.standardError)")
        let settled = try #require(try decodedJSON([MigrationRecord].self, from: reconcile.standardOutput).only)
        #expect(settled.id == id)
        // libvirt drove the job on after the coordinator died; reconcile watched it to its end.
        #expect(settled.state == .completed, "\(settled.events.last?.reason ?? "")")
        let moved = try #require(settled.reservation?.devices.only).id
        #expect(settled.reservation?.state == .committed)
        // Exactly one mdev for the guest, where it runs; none left where it was.
        #expect(try lab.runningDomains(on: "dst") == [vm])
        #expect(try lab.runningDomains(on: "src").isEmpty)
        #expect(try lab.mdevs(on: "dst") == [moved])
        #expect(try lab.mdevs(on: "src").isEmpty, "src still has \(mdev)")
        #expect(try lab.definedMdevs(on: "dst") == [moved])
        #expect(try lab.definedMdevs(on: "src").isEmpty)
        let reservations = try lab.agent("src", get: "/v1/reservations").standardOutput
        #expect(!reservations.contains("\"state\":\"active\"") && !reservations.contains("\"state\":\"committed\""))
    }

    @Test("an mdev the source's agent did not make stays on the source, and the record says so")
    func handMadeMdevStays() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-hand"
        defer { lab.reset() }
        let mdev = try lab.startGuest(vm, mdevBy: "hand")
        let outcome = try Coordinator(lab: lab, directory: directory).migrate(vm, from: "src", to: "dst", ["--json"])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let record = try decodedJSON(MigrationRecord.self, from: outcome.standardOutput)
        #expect(record.state == .completed)
        #expect(try lab.mdevs(on: "src") == [mdev])
        #expect(
            record.events.last?.details["source_vgpu"]
                == "mdev \(mdev) stays on src: not created by its agent, left as it is")
        let moved = try #require(record.reservation?.devices.only).id
        #expect(try lab.mdevs(on: "dst") == [moved])
    }

    /// Checks what a migration that completed while its history could not be written leaves:
    /// the VM on dst with a new mdev, committed, src given back; its record, kept in the journal,
    /// completed and saying why it is there. Returns the record.
    func completedWithRecordInJournal(
        _ coordinator: Coordinator, _ migration: RunningProcess, _ vm: String, carrying mdev: String
    ) throws -> MigrationRecord {
        let lab = coordinator.lab
        let id = try #require(migrationID(of: migration))
        #expect(
            migration.waitForLine(within: 180) { $0.contains("the history store cannot be written") } != nil,
            "\(migration.standardOutput)\(migration.standardError)")
        #expect(migration.waitForExit(within: 300) == 0, "\(migration.standardOutput)\(migration.standardError)")
        #expect(migration.standardOutput.contains("completed: VM runs on dst"), "\(migration.standardOutput)")
        #expect(migration.standardOutput.contains("waits in the local journal"), "\(migration.standardOutput)")
        // The migration went on to its end with the vGPU.
        #expect(try lab.runningDomains(on: "dst") == [vm])
        #expect(try lab.runningDomains(on: "src").isEmpty)
        let moved = try #require(Array(try lab.mdevs(on: "dst")).only)
        #expect(moved != mdev)
        #expect(try lab.mdevs(on: "src").isEmpty)
        // The record waits in the journal: completed, its reservation committed, and why.
        let kept = try #require(try coordinator.journal.records().only)
        #expect(kept.id == id && kept.state == .completed, "\(kept.events.last?.reason ?? "")")
        let reservation = try #require(kept.reservation)
        #expect(reservation.state == .committed && reservation.devices.map(\.id) == [moved])
        let asked = try lab.agent("dst", get: "/v1/reservations/\(reservation.id)").standardOutput
        #expect(asked.contains("\"state\":\"committed\""), "\(asked)")
        #expect(kept.notes?.first?.text.hasPrefix("the history store could not be written") == true)
        return kept
    }

    /// The history answers again: the next command writes the journal's record into it.
    func replayedIntoHistory(_ coordinator: Coordinator, _ kept: MigrationRecord) throws {
        let shown = try coordinator.read(["show", kept.id, "--json"])
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect(
            shown.standardError.contains(
                "note: migration \(kept.id): written from the local journal into the history (completed)"),
            "\(shown.standardError)")
        let record = try decodedJSON(MigrationRecord.self, from: shown.standardOutput)
        #expect(record.state == .completed)
        // The same record (`show --json` gives times to the millisecond).
        #expect(record.reservation == kept.reservation)
        #expect(record.intents.map(\.action) == kept.intents.map(\.action))
        #expect(record.intents.map(\.details) == kept.intents.map(\.details))
        #expect(record.events.map(\.to) == kept.events.map(\.to))
        #expect(record.notes?.last?.text.hasPrefix("replayed from the local journal") == true)
        #expect(try coordinator.journal.records().isEmpty)
    }

    @Test(
        "the SQLite history made unwritable mid-migration (chattr +i): the VM completes with its vGPU, then the record reaches the history"
    )
    func sqliteUnwritable() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        let vm = "nested-sqlite"
        defer { lab.reset() }
        let (coordinator, mdev, migration) = try startSlowMigration(
            lab, vm, in: directory, ["--history-patience", "3"])
        defer { migration.stop() }
        // The database and its write-ahead log become immutable: every write fails, as on a disk
        // remounted read-only; reads still work.
        let files = ["", "-wal"].map { coordinator.databaseLocation + $0 }
        let immutable = try ProcessOutcome.run(URL(fileURLWithPath: "/usr/bin/chattr"), ["+i"] + files)
        #expect(immutable.status == 0, "chattr needs a file system with attributes (ext4): \(immutable.standardError)")
        defer {
            _ = try? ProcessOutcome.run(URL(fileURLWithPath: "/usr/bin/chattr"), ["-i"] + files)
            try? FileManager.default.removeItem(at: directory)
        }
        let kept = try completedWithRecordInJournal(coordinator, migration, vm, carrying: mdev)

        let writable = try ProcessOutcome.run(URL(fileURLWithPath: "/usr/bin/chattr"), ["-i"] + files)
        #expect(writable.status == 0)
        try replayedIntoHistory(coordinator, kept)
    }

    @Test(
        "the PostgreSQL history stopped mid-migration: the VM completes with its vGPU, then the record reaches the history once it is back"
    )
    func postgresStopped() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-postgres"
        defer { lab.reset() }
        // The server listens in the lab's namespace, where the coordinator runs.
        let server = try PostgresServer.start(namespace: lab.namespace)
        defer { server.stop() }
        let (coordinator, mdev, migration) = try startSlowMigration(
            lab, vm, in: directory, database: try server.createDatabase(), ["--history-patience", "3"])
        defer { migration.stop() }
        try server.halt()
        let kept = try completedWithRecordInJournal(coordinator, migration, vm, carrying: mdev)

        try server.resume()
        try replayedIntoHistory(coordinator, kept)
    }

    @Test("dst's agent SIGKILLed and restarted mid-migration: the reservation survives and is committed")
    func destinationAgentRestarted() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let vm = "nested-agent"
        defer { lab.reset() }
        let (coordinator, mdev, migration) = try startSlowMigration(lab, vm, in: directory)
        defer { migration.stop() }
        let id = try #require(migrationID(of: migration))
        // Killed at once, started again with its own command line (its journal and the kernel's
        // mdevs are what it finds).
        let restart = try lab.run(
            "dst",
            """
            pid=$(cat /run/vgpu-agent.pid); args=$(tr '\\0' ' ' < /proc/$pid/cmdline); kill -9 $pid
            while kill -0 $pid 2>/dev/null; do sleep 0.1; done
            setsid $args </dev/null >>/var/log/vgpu-agent.log 2>&1 & echo $! > /run/vgpu-agent.pid
            """)
        #expect(restart.status == 0, "\(restart.standardError)")
        let status = migration.waitForExit(within: 300)
        var record = try coordinator.record(id)
        // The agent starts again in its own time (seconds under the nested emulation, while the
        // host runs the incoming QEMU).
        let back = await eventually(within: 180) {
            (try? lab.agent("dst", get: "/v1/reservations").status) == 0
        }
        #expect(back, "\((try? lab.run("dst", "tail -20 /var/log/vgpu-agent.log").standardOutput) ?? "")")
        print("destination agent restarted: the commit was made by \(status == 0 ? "the migration" : "reconcile")")
        if status != 0 {
            // The agent was not back in time for the commit: the record says unknown, its
            // reservation kept, and reconcile commits.
            #expect(record.state == .unknown, "\(migration.standardOutput)\(migration.standardError)")
            #expect(record.reservation?.state == .active)
            let reconcile = try coordinator.reconcile()
            #expect(reconcile.status == 0, "\(reconcile.standardOutput)\(reconcile.standardError)")
            record = try coordinator.record(id)
        }
        #expect(record.state == .completed, "\(record.events.last?.reason ?? "")")
        let reservation = try #require(record.reservation)
        #expect(reservation.state == .committed)
        let moved = try #require(reservation.devices.only).id
        #expect(moved != mdev)
        #expect(try lab.runningDomains(on: "dst") == [vm])
        #expect(try lab.mdevs(on: "dst") == [moved])
        #expect(try lab.mdevs(on: "src").isEmpty)
        let asked = try lab.agent("dst", get: "/v1/reservations/\(reservation.id)").standardOutput
        #expect(asked.contains("\"state\":\"committed\""), "\(asked)")
    }

    @Test(
        "drain src with two mtty guests, --parallel 2: the plan books dst's ports, both move with new mdevs, src is empty"
    )
    func drainWithMdevs() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.reset() }
        let coordinator = Coordinator(lab: lab, directory: directory)
        let first = try lab.startGuest("nested-drain-1")
        let second = try lab.startGuest("nested-drain-2")
        #expect(try lab.mdevs(on: "src") == [first, second])
        let common = ["--to", "dst", "--parallel", "2", "--policies", coordinator.policies] + coordinator.inventory

        let planned = try lab.coordinator(
            ["drain", "src", "--dry-run", "--json"] + common, environment: coordinator.environment)
        #expect(planned.status == 0, "\(planned.standardOutput)\(planned.standardError)")
        let plan = try decodedJSON(DrainPlanReport.self, from: planned.standardOutput).plan
        #expect(plan.placements.count == 2 && plan.unplaced.isEmpty)
        #expect(
            plan.placements.allSatisfy { $0.vgpus.map(\.type) == ["mtty-2"] && $0.vgpus.first?.gpu == .named("mtty") })

        let drained = try lab.coordinator(["drain", "src", "--json"] + common, environment: coordinator.environment)
        #expect(drained.status == 0, "\(drained.standardOutput)\(drained.standardError)")
        let drain = try decodedJSON(DrainRecord.self, from: drained.standardOutput)
        #expect(drain.state == .completed && drain.moves.allSatisfy { $0.state == .moved && $0.migrations.count == 1 })
        #expect(try lab.runningDomains(on: "dst") == ["nested-drain-1", "nested-drain-2"])
        #expect(try lab.runningDomains(on: "src").isEmpty)
        // New mdevs on dst, reserved and committed by its agent; src's given back.
        var moved: Set<String> = []
        for move in drain.moves {
            let record = try coordinator.record(try #require(move.migrations.first))
            #expect(record.state == .completed && record.reservation?.state == .committed)
            moved.formUnion(record.reservation?.devices.map(\.id) ?? [])
            // The plan's device went to dst's agent with the request, and the agent used it.
            let reserved = try #require(record.events.first { $0.to == .migrating }).reason
            #expect(!reserved.contains("not the planned"), "\(reserved)")
            let id = try #require(record.reservation?.id)
            #expect(try reservations(lab, "dst").first { $0.id == id }?.request.prefer == [.named("mtty")])
        }
        #expect(moved.count == 2 && moved.isDisjoint(with: [first, second]))
        #expect(try lab.mdevs(on: "dst") == moved)
        #expect(try lab.mdevs(on: "src").isEmpty)
        _ = try lab.coordinator(["uncordon", "src"], environment: coordinator.environment)
    }

    @Test(
        "dst has room for one dual-port device: each guest's check passes alone; the drain moves one and names the other"
    )
    func drainAvoidsDoubleBooking() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.reset() }
        let coordinator = Coordinator(lab: lab, directory: directory)
        _ = try lab.startGuest("nested-scarce-1")
        let second = try lab.startGuest("nested-scarce-2")
        // dst's mtty has 24 ports: 11 dual-port devices made by hand leave room for one more.
        let types = "/sys/class/mdev_bus/mtty/mdev_supported_types"
        for _ in 0..<11 {
            let made = try lab.run("dst", "echo \(UUID().uuidString.lowercased()) > \(types)/mtty-2/create")
            #expect(made.status == 0, "\(made.standardError)")
        }
        #expect(try lab.run("dst", "cat \(types)/mtty-2/available_instances").standardOutput == "1\n")
        // One at a time, each guest's check finds room on dst.
        for vm in ["nested-scarce-1", "nested-scarce-2"] {
            let check = try coordinator.check(vm)
            #expect(check.status == 0, "\(vm): \(check.standardOutput)\(check.standardError)")
        }
        let drained = try lab.coordinator(
            ["drain", "src", "--to", "dst", "--json", "--policies", coordinator.policies] + coordinator.inventory,
            environment: coordinator.environment)
        #expect(drained.status == 1, "\(drained.standardOutput)\(drained.standardError)")
        let drain = try decodedJSON(DrainRecord.self, from: drained.standardOutput)
        #expect(drain.state == .incomplete)
        #expect(drain.move(of: "nested-scarce-1")?.state == .moved)
        let left = try #require(drain.move(of: "nested-scarce-2"))
        #expect(left.state == .unplaced && left.migrations.isEmpty)
        #expect(left.reason?.contains("vgpu.capacity") == true, "\(left.reason ?? "")")
        #expect(try lab.runningDomains(on: "dst") == ["nested-scarce-1"])
        #expect(try lab.runningDomains(on: "src") == ["nested-scarce-2"])
        #expect(try lab.mdevs(on: "src") == [second])
        #expect(try lab.run("dst", "cat \(types)/mtty-2/available_instances").standardOutput == "0\n")
    }

    /// The reservations `host`'s agent holds, as it lists them.
    func reservations(_ lab: NestedLab, _ host: String) throws -> [Reservation] {
        let listed = try lab.agent(host, get: "/v1/reservations")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode([Reservation].self, from: Data(listed.standardOutput.utf8))
    }

    @Test(
        "drain of three mtty guests SIGKILLed after its second move, the third mid-migration: --resume settles it, nothing migrated twice, nothing left reserved"
    )
    func drainKilledAndResumed() async throws {
        let lab = try #require(NestedLab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.reset() }
        // `slow` (4 MiB/s) keeps the third migration running when the second ends.
        let coordinator = Coordinator(lab: lab, directory: directory, policies: try slowPolicies(in: directory))
        let guests = ["nested-resume-1", "nested-resume-2", "nested-resume-3"]
        var started: Set<String> = []
        for guest in guests { started.insert(try lab.startGuest(guest)) }
        let common = ["--policies", coordinator.policies] + coordinator.inventory
        let drain = try lab.startCoordinator(
            ["drain", "src", "--to", "dst", "--parallel", "2", "--policy", "slow"] + common, directory: directory,
            environment: coordinator.environment.merging(["VGPU_MIGRATE_TEST_DRAIN_PAUSE_AFTER": "2"]) { $1 })
        defer { drain.stop() }
        let paused = drain.waitForLine(within: 300) { $0.hasPrefix("paused after 2 moves") }
        #expect(paused != nil, "\(drain.standardOutput)\(drain.standardError)")
        drain.kill()
        let id = try #require(DrainLabTests.drainID(in: drain.standardOutput), "\(drain.standardOutput)")

        // The coordinator is gone with one migration under way: its vGPU is reserved on dst.
        let killed = try decodedJSON(
            DrainRecord.self, from: try coordinator.read(["show", id, "--json"]).standardOutput)
        #expect(killed.state == .running)
        #expect(killed.moves.filter { $0.state == .moved }.count == 2, "\(killed.moves)")
        let inFlight = try #require(killed.moves.first { $0.state == .migrating }, "\(killed.moves)")
        #expect(try reservations(lab, "dst").filter { $0.state == .active }.map(\.request.owner) == inFlight.migrations)

        let resumed = try lab.coordinator(["drain", "--resume", id] + common, environment: coordinator.environment)
        print(resumed.standardOutput)
        #expect(resumed.status == 0, "\(resumed.standardOutput)\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("settled migration"), "\(resumed.standardOutput)")
        let after = try decodedJSON(
            DrainRecord.self, from: try coordinator.read(["show", id, "--json"]).standardOutput)
        #expect(after.state == .completed)
        // Nothing migrated twice: each VM has one completed migration, its reservation committed. The
        // one the kill interrupted either went on to complete (its job ran on in libvirt) or, when
        // it was stopped before its job, failed with its reservation released and was run again.
        #expect(after.moves.allSatisfy { $0.state == .moved }, "\(after.moves)")
        var moved: Set<String> = []
        for move in after.moves {
            let records = try move.migrations.map { try coordinator.record($0) }
            let completed = records.filter { $0.state == .completed }
            #expect(completed.count == 1 && records.last?.state == .completed, "\(move.vm): \(records.map(\.state))")
            #expect(completed.allSatisfy { $0.reservation?.state == .committed }, "\(move.vm)")
            for interrupted in records.dropLast() {
                #expect(
                    move.migrations.first == inFlight.migrations.first,
                    "\(move.vm): only the interrupted move ran twice")
                #expect(
                    interrupted.state == .failed
                        && [.released, .releasing].contains(interrupted.reservation?.state), "\(interrupted.events)"
                )
            }
            moved.formUnion(completed.flatMap { $0.reservation?.devices.map(\.id) ?? [] })
        }
        #expect(try lab.runningDomains(on: "dst") == Set(guests))
        #expect(try lab.runningDomains(on: "src").isEmpty)
        // Nothing left reserved: dst holds exactly the three committed mdevs, src none of the old ones.
        // A released device a QEMU still held goes once it is free (`releasing` until then).
        let unsettled: Set<ReservationState> = [.active, .creating, .releasing]
        #expect(
            await eventually(within: 60) {
                (try? reservations(lab, "dst"))?.allSatisfy { !unsettled.contains($0.state) } == true
            })
        #expect(moved.count == 3 && moved.isDisjoint(with: started))
        #expect(try lab.mdevs(on: "dst") == moved)
        #expect(try lab.mdevs(on: "src").isEmpty)
        let held = try reservations(lab, "dst")
        #expect(Set(held.filter { $0.state == .committed }.flatMap(\.devices).map(\.id)) == moved)
        #expect(try reservations(lab, "src").allSatisfy { $0.state != .active && $0.state != .committed })
    }
}
