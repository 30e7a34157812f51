import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@testable import VGPUMigrationCLI

@Suite("drain in the two-host lab (real libvirt daemons and QEMU)", .serialized, .twoHostLab, .tags(.lab))
struct DrainLabTests {
    static let guests = ["drain-1", "drain-2", "drain-3", "drain-4"]

    /// A history of the test's own, and the options every command of the test takes.
    static func arguments(_ lab: Lab, in directory: URL) throws -> (database: String, common: [String]) {
        let database = directory.appendingPathComponent("history.sqlite").path
        return (
            database,
            [
                "--inventory", try labInventory(lab, in: directory), "--database", database, "--policies",
                TestData.policies.path,
            ]
        )
    }

    /// The drain's id from its first line (`drain ID of src: ...`).
    static func drainID(in output: String) -> String? {
        output.split(separator: "\n").first { $0.hasPrefix("drain ") }.map { String($0.split(separator: " ")[1]) }
    }

    @Test(
        "four checking guests drained with --parallel 2: all on dst, no page lost, the drain and its four migrations in the history"
    )
    func drainFour() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { for guest in Self.guests { lab.removeGuest(guest) } }
        for guest in Self.guests {
            let start = try lab.startCheckingGuest(guest, dirtyMiBPerSecond: 1, workingSetMiB: 16, memoryMiB: 128)
            #expect(start.status == 0, "\(start.standardError)")
        }
        for guest in Self.guests {
            #expect(await eventually(within: 60) { !lab.guestReports(guest, on: "src").isEmpty }, "\(guest)")
        }
        let (database, common) = try DrainLabTests.arguments(lab, in: directory)
        let ticks = Dictionary(
            uniqueKeysWithValues: Self.guests.map { ($0, lab.guestReports($0, on: "src").last?.tick ?? 0) })

        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["drain", "src", "--to", "dst", "--parallel", "2"] + common)
        print(outcome.standardOutput)
        #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
        let lines = outcome.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.contains("cordoned src: no migration goes there"))
        #expect(lines.contains { $0.hasPrefix("Drain ") && $0.contains(": completed, 4 of 4 VMs moved") })
        // Never more than two at once: the progress lines say how many run.
        let running = lines.compactMap { line -> Int? in
            guard line.hasPrefix("["), let part = line.split(separator: ",").dropFirst().first else { return nil }
            return Int(part.trimmingCharacters(in: .whitespaces).split(separator: " ")[0])
        }
        #expect(!running.isEmpty && running.allSatisfy { $0 <= 2 } && running.contains(2), "\(running)")
        for guest in Self.guests {
            #expect(try runningOn(lab, guest) == ["dst"], "\(guest)")
            // Each guest goes on where it was and checks its pages again on dst.
            #expect(
                await eventually(within: 60) {
                    lab.guestReports(guest, on: "dst").contains { $0.tick > (ticks[guest] ?? 0) + 1 }
                }, "\(guest)")
            let reports = lab.guestReports(guest, on: "dst")
            #expect(
                !reports.isEmpty && reports.allSatisfy { $0.errors == 0 },
                "\(guest): \(reports.last.map { "\($0)" } ?? "")")
        }

        let id = try #require(Self.drainID(in: outcome.standardOutput))
        let store = try SQLiteHistoryStore(path: database)
        let drain = try #require(try await store.drain(id: id))
        #expect(drain.state == .completed && drain.moves.count == 4)
        #expect(drain.moves.allSatisfy { $0.state == .moved && $0.destination == "dst" && $0.migrations.count == 1 })
        let listed = try ProductRunner.run("vgpu-migrate", ["history", "--drains", "--database", database])
        #expect(listed.standardOutput.contains(String(id.prefix(8))) && listed.standardOutput.contains("4/4"))
        let shown = try ProductRunner.run("vgpu-migrate", ["show", String(id.prefix(8)), "--database", database])
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect(
            shown.standardOutput.components(separatedBy: ": dst, completed").count - 1 == 4, "\(shown.standardOutput)")
        #expect(try await store.list(HistoryFilter()).filter { $0.state == .completed }.count == 4)

        // The host stays cordoned until its maintenance is over.
        let cordons = try ProductRunner.run("vgpu-migrate", ["cordon", "--json", "--database", database])
        #expect(try decodedJSON([HostCordon].self, from: cordons.standardOutput).map(\.host) == ["src"])
        let lifted = try ProductRunner.run("vgpu-migrate", ["uncordon", "src", "--database", database])
        #expect(lifted.status == 0 && lifted.standardOutput.hasPrefix("uncordoned src"))
    }

    @Test("on a terminal the drain's count is one line redrawn in place: done, running with % sent, left")
    func terminalProgress() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let guests = ["tty-1", "tty-2"]
        defer { for guest in guests { lab.removeGuest(guest) } }
        for guest in guests {
            for outcome in try lab.defineGuest(guest, memoryMiB: 64) {
                #expect(outcome.status == 0, "\(outcome.standardError)")
            }
        }
        let (_, common) = try DrainLabTests.arguments(lab, in: directory)
        let command = ([try ProductRunner.executable("vgpu-migrate").path, "drain", "src", "--to", "dst"] + common)
            .map { "'\($0)'" }.joined(separator: " ")
        // util-linux's script gives the drain a pseudo-terminal and copies what it writes there.
        let outcome = try ProcessOutcome.run(
            URL(fileURLWithPath: "/usr/bin/script"), ["-qfec", command, "/dev/null"], environment: ["TERM": "xterm"])
        let output = outcome.standardOutput
        #expect(outcome.status == 0, "\(output)\(outcome.standardError)")
        // After the first move ends the count is redrawn: the line is cleared and written again.
        let redrawn = output.components(separatedBy: "\r\u{1B}[K").dropFirst()
        let counts = redrawn.filter { $0.hasPrefix("drain: ") }.map { $0.prefix { $0 != "\r" && $0 != "\n" } }
        #expect(
            counts.contains { $0.hasPrefix("drain: 1 done, 1 running (tty-") && $0.hasSuffix("%), 0 left") },
            "\(counts)")
        // No count is a line of its own, as it is when nobody watches.
        #expect(!output.contains("[1 done,"), "\(output)")
        for guest in guests { #expect(output.contains("\(guest) → dst: completed in "), "\(output)") }
        #expect(output.contains(": completed, 2 of 2 VMs moved"), "\(output)")
    }

    @Test("a drain whose coordinator is SIGKILLed after its second migration is resumed: nothing migrated twice")
    func killedAndResumed() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { for guest in Self.guests { lab.removeGuest(guest) } }
        for guest in Self.guests {
            for outcome in try lab.defineGuest(guest, memoryMiB: 64) {
                #expect(outcome.status == 0, "\(outcome.standardError)")
            }
        }
        let (database, common) = try DrainLabTests.arguments(lab, in: directory)
        let drain = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"), ["drain", "src", "--to", "dst", "--parallel", "1"] + common,
            directory: directory, environment: ["VGPU_MIGRATE_TEST_DRAIN_PAUSE_AFTER": "2"])
        defer { drain.stop() }
        let paused = drain.waitForLine(within: 120) { $0.hasPrefix("paused after 2 moves") }
        #expect(paused != nil, "\(drain.standardOutput)\(drain.standardError)")
        drain.kill()
        let id = try #require(Self.drainID(in: drain.standardOutput), "\(drain.standardOutput)")
        let store = try SQLiteHistoryStore(path: database)
        let before = try #require(try await store.drain(id: id))
        #expect(before.state == .running)
        #expect(before.moves.filter { $0.state == .moved }.count == 2)

        // reconcile points at the drain; --resume goes on with it.
        let reconcile = try ProductRunner.run("vgpu-migrate", ["reconcile", "--stale-after", "0"] + common)
        #expect(reconcile.status == 0, "\(reconcile.standardOutput)\(reconcile.standardError)")
        #expect(reconcile.standardError.contains("drain --resume \(id)"), "\(reconcile.standardError)")
        let resumed = try ProductRunner.run("vgpu-migrate", ["drain", "--resume", String(id.prefix(8))] + common)
        #expect(resumed.status == 0, "\(resumed.standardOutput)\(resumed.standardError)")
        #expect(resumed.standardOutput.contains("taken up again: 2 moves to run"), "\(resumed.standardOutput)")
        for guest in Self.guests { #expect(try runningOn(lab, guest) == ["dst"], "\(guest)") }
        let after = try #require(try await store.drain(id: id))
        #expect(after.state == .completed)
        // Each VM migrated once: one migration per move, four in the history, none unfinished.
        #expect(after.moves.allSatisfy { $0.state == .moved && $0.migrations.count == 1 }, "\(after.moves)")
        let migrations = try await store.list(HistoryFilter())
        #expect(migrations.count == 4 && Set(migrations.map(\.vm)) == Set(Self.guests))
        #expect(try await store.unfinished().isEmpty)
    }
}

@Suite("drain when the destination's libvirt dies (two-host lab)", .serialized, .twoHostLab, .tags(.lab))
struct DrainDestinationCrashLabTests {
    @Test("the destination's daemon killed after the first move: the others are each tried and reported, none lost")
    func destinationDies() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let guests = ["crash-1", "crash-2", "crash-3"]
        defer { for guest in guests { lab.removeGuest(guest) } }
        for guest in guests {
            for outcome in try lab.defineGuest(guest, memoryMiB: 64) {
                #expect(outcome.status == 0, "\(outcome.standardError)")
            }
        }
        let (database, common) = try DrainLabTests.arguments(lab, in: directory)
        let drain = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"), ["drain", "src", "--parallel", "1"] + common,
            directory: directory)
        defer { drain.stop() }
        let first = drain.waitForLine(within: 120) { $0.hasPrefix("crash-1 → dst: completed") }
        #expect(first != nil, "\(drain.standardOutput)\(drain.standardError)")
        try lab.killDaemon("dst")
        let status = drain.waitForExit(within: 180)
        let output = drain.standardOutput
        #expect(status == 1, "\(output)\(drain.standardError)")
        #expect(output.contains("Drain ") && output.contains(": incomplete, 1 of 3 VMs moved"), "\(output)")
        for guest in ["crash-2", "crash-3"] {
            #expect(output.contains("\(guest) stays on src: failed: "), "\(output)")
            #expect(try lab.virsh(lab.sourceURI, ["domstate", guest]).standardOutput.hasPrefix("running"), "\(guest)")
        }
        let id = try #require(DrainLabTests.drainID(in: output))
        let record = try #require(try await SQLiteHistoryStore(path: database).drain(id: id))
        #expect(record.state == .incomplete && record.move(of: "crash-1")?.state == .moved)
        #expect(record.move(of: "crash-2")?.state == .failed && record.move(of: "crash-3")?.state == .failed)
    }
}

@Suite(
    "drain with a spare host: a move whose destination died is retried on the other (three-host lab)", .serialized,
    .labWithSpareHost, .tags(.lab))
struct DrainRetryElsewhereLabTests {
    @Test("dst's daemon killed after the first move: each VM planned for dst is retried once on spare, none stays")
    func retriedOnSpare() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let guests = ["spare-1", "spare-2", "spare-3", "spare-4"]
        defer { for guest in guests { lab.removeGuest(guest) } }
        for guest in guests {
            for outcome in try lab.defineGuest(guest, memoryMiB: 64) {
                #expect(outcome.status == 0, "\(outcome.standardError)")
            }
        }
        let (database, common) = try DrainLabTests.arguments(lab, in: directory)
        // The plan spreads the four over dst and spare, two each.
        let planned = try ProductRunner.run("vgpu-migrate", ["drain", "src", "--dry-run", "--json"] + common)
        #expect(planned.status == 0, "\(planned.standardOutput)\(planned.standardError)")
        let plan = try decodedJSON(DrainPlanReport.self, from: planned.standardOutput).plan
        let toDst = Set(plan.placements.filter { $0.destination == "dst" }.map(\.vm))
        #expect(toDst.count == 2 && plan.placements.count == 4, "\(plan.placements)")

        let drain = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"), ["drain", "src", "--parallel", "1"] + common,
            directory: directory)
        defer { drain.stop() }
        let first = drain.waitForLine(within: 120) { $0.contains(": completed in ") }
        let firstVM = try #require(first.map { String($0.prefix { $0 != " " }) }, "\(drain.standardOutput)")
        try lab.killDaemon("dst")
        let status = drain.waitForExit(within: 240)
        let output = drain.standardOutput
        #expect(status == 0, "\(output)\(drain.standardError)")
        #expect(output.contains(": completed, 4 of 4 VMs moved"), "\(output)")
        // Every VM planned for dst that had not moved before the kill failed there and moved to spare.
        let retried = toDst.subtracting([firstVM])
        #expect(!retried.isEmpty)
        for vm in retried {
            #expect(output.contains("\(vm): failed on dst, trying spare"), "\(vm): \(output)")
            #expect(output.contains("\(vm) → spare: migrating (second attempt)"), "\(vm): \(output)")
        }
        let id = try #require(DrainLabTests.drainID(in: output))
        let record = try #require(try await SQLiteHistoryStore(path: database).drain(id: id))
        #expect(record.state == .completed)
        for guest in guests {
            let move = try #require(record.move(of: guest))
            #expect(move.state == .moved, "\(guest): \(move)")
            if retried.contains(guest) {
                #expect(move.destination == "spare", "\(guest): \(move)")
            }
            // None runs on src any more; those moved to spare run there (dst's daemon, dead, is not asked).
            #expect(try runningOn(lab, guest) == (move.destination == "spare" ? ["spare"] : []), "\(guest): \(move)")
        }
        let onSpare = record.moves.filter { $0.destination == "spare" }
        #expect(onSpare.count == 4 - (toDst.contains(firstVM) ? 1 : 0), "\(record.moves)")
    }
}
