import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

/// The lab guest is asked to dirty 400 MiB/s over a 96 MiB working set while the migration may
/// send only 50 MiB/s: at the end of each pass about 96 MiB are left to send, which needs ~1.9 s
/// of downtime, so a 300 ms limit never converges. That holds for any real rate above the link's
/// (a pass of ~1.9 s then dirties the whole working set again); a host whose KVM runs the guest
/// slowly gets less than 400 (100-200 MiB/s seen on 2-core machines), so the tests demand what
/// they need: at least 1.25 × the link. Every page the guest wrote is checked by the guest itself.
private let dirtyRate = 400
private let linkMiBPerSecond = 50
private let workingSetMiB = 96
private let memoryMiB = 512

@Suite(
    "a guest that dirties memory faster than 300 ms allows (real libvirt, QEMU, lab guest)", .serialized, .twoHostLab,
    .tags(.lab))
struct DirtyingGuestLabTests {
    @Test("the guest's own page check reports pages it did not write (the check can fail)")
    func pageCheckSeesSpoiledPages() async throws {
        let lab = try #require(Lab.current)
        defer { lab.removeGuest("spoiled") }
        let start = try lab.startCheckingGuest(
            "spoiled", dirtyMiBPerSecond: 50, workingSetMiB: 32, memoryMiB: 64, spoiledPages: 3)
        #expect(start.status == 0, "\(start.standardError)")
        let reported = await eventually(within: 60) {
            lab.guestReports("spoiled", on: "src").contains { $0.errors > 0 }
        }
        #expect(reported)
        #expect(lab.guestReports("spoiled", on: "src").last?.errors == 3)
    }

    @Test("an idle guest migrates src → dst and back; its page check reports 0 errors on both hosts")
    func idleGuestThereAndBack() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("idle") }
        let start = try lab.startCheckingGuest("idle", dirtyMiBPerSecond: 0, workingSetMiB: 64, memoryMiB: 256)
        #expect(start.status == 0, "\(start.standardError)")
        #expect(await eventually(within: 60) { !lab.guestReports("idle", on: "src").isEmpty })
        let database = ["--database", directory.appendingPathComponent("history.sqlite").path]
        let common =
            ["--inventory", try labInventory(lab, in: directory), "--policies", TestData.policies.path] + database
        for (from, to) in [("src", "dst"), ("dst", "src")] {
            let before = lab.guestReports("idle", on: from).last?.tick ?? 0
            let outcome = try ProductRunner.run(
                "vgpu-migrate", ["migrate", "idle", "--from", from, "--to", to] + common)
            #expect(outcome.status == 0, "\(outcome.standardOutput)\(outcome.standardError)")
            #expect(try runningOn(lab, "idle") == [to])
            // The guest goes on where it was (its tick count continues) and checks every page again.
            #expect(
                await eventually(within: 60) {
                    lab.guestReports("idle", on: to).contains { $0.tick > before + 1 }
                })
            let after = lab.guestReports("idle", on: to).filter { $0.tick > before }
            #expect(!after.isEmpty)
            #expect(after.allSatisfy { $0.errors == 0 && $0.generation == 1 && $0.checkedPages > 0 }, "\(after)")
        }
        // The history shows both migrations and every transition of each.
        let history = try ProductRunner.run("vgpu-migrate", ["history", "--vm", "idle", "--json"] + database)
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(history.standardOutput.utf8)) as? [[String: Any]],
            "\(history.standardError)")
        #expect(rows.map { $0["status"] as? String } == ["completed", "completed"])
        for id in rows.compactMap({ $0["id"] as? String }) {
            let show = try ProductRunner.run("vgpu-migrate", ["show", id, "--json"] + database)
            let record = try decodedJSON(MigrationRecord.self, from: show.standardOutput)
            #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .completed])
        }
    }

    @Test("adaptive: completes with the achieved downtime within the cap; 0 page errors after the switchover")
    func adaptiveConverges() async throws {
        let record = try await migrateDirtyingGuest(
            "adaptive", policy: "fast-adaptive", base: "adaptive",
            changes: [("  max_ms: 30000", "  max_ms: 4000")], expectSuccess: true)
        #expect(record.state == .completed)
        // The limit was raised from live statistics, not a timetable, and stayed within the cap.
        #expect(record.downtimeSteps.count >= 2, "\(record.downtimeSteps)")
        #expect(record.downtimeSteps.allSatisfy { $0.milliseconds <= 4000 })
        #expect(record.downtimeSteps.last!.milliseconds > 1000)
        let downtime = try #require(record.finalStats?.downtimeMilliseconds)
        #expect(downtime <= 4000)
    }

    @Test("Nova stepping (3 steps to 4000 ms, delays scaled down): completes within the cap, 0 page errors")
    func novaSteppingConverges() async throws {
        let record = try await migrateDirtyingGuest(
            "nova", policy: "fast-nova", base: "nova-vgpu",
            changes: [
                ("  max_ms: 500000", "  max_ms: 4000"), ("    downtime_ms: 500000", "    downtime_ms: 4000"),
                ("    delay_s_per_gib: 3", "    delay_s_per_gib: 1"),
            ], expectSuccess: true)
        #expect(record.state == .completed)
        // Steps 1333, 2222, 3111, 4000 ms at 0, 2, 4, 6 s (data_gb is at least 2): the first
        // step is too low for ~1.9 s of data, so at least one more step was taken.
        let steps = record.downtimeSteps.map(\.milliseconds)
        #expect(steps.first == 1333, "\(steps)")
        #expect(steps.count >= 2, "\(steps)")
        #expect(steps.allSatisfy { $0 <= 4000 })
        let downtime = try #require(record.finalStats?.downtimeMilliseconds)
        #expect(downtime <= 4000)
    }

    @Test("a fixed 300 ms limit never converges: the completion timeout aborts, the guest runs on src, 0 errors")
    func fixedLimitTimesOut() async throws {
        let record = try await migrateDirtyingGuest(
            "fixed", policy: "short-fixed", base: "fixed-300ms",
            changes: [("completion_timeout_s_per_gib: 800", "completion_timeout_s_per_gib: 12")],
            expectSuccess: false)
        #expect(record.state == .failed)
        #expect(record.events.last?.reason.contains("completion timeout: 12 s passed") == true, "\(record.events)")
        #expect(record.downtimeSteps.map(\.milliseconds) == [300])
    }

    /// Starts the dirtying guest on src, migrates it to dst with `policy` (derived from `base`,
    /// bandwidth `linkMiBPerSecond`), and checks the guest's page reports on the host it ends on.
    private func migrateDirtyingGuest(
        _ name: String, policy: String, base: String, changes: [(String, String)], expectSuccess: Bool
    ) async throws -> MigrationRecord {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest(name) }
        let start = try lab.startCheckingGuest(
            name, dirtyMiBPerSecond: dirtyRate, workingSetMiB: workingSetMiB, memoryMiB: memoryMiB)
        #expect(start.status == 0, "\(start.standardError)")
        // Wait until the guest really dirties memory faster than the link sends it.
        #expect(
            await eventually(within: 60) {
                (lab.guestReports(name, on: "src").last?.achievedMiBPerSecond ?? 0) >= linkMiBPerSecond * 5 / 4
            }, "\(lab.guestReports(name, on: "src"))")
        let onTimeout = base == "adaptive" ? "  on_timeout: force-switchover" : "  on_timeout: abort"
        let policies = try policiesWith(
            policy, from: base, in: directory,
            changes + [(onTimeout, onTimeout + "\n  bandwidth_mib_per_s: \(linkMiBPerSecond)")])
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            [
                "migrate", name, "--from", "src", "--to", "dst", "--policy", policy, "--inventory",
                try labInventory(lab, in: directory), "--database",
                directory.appendingPathComponent("history.sqlite").path, "--policies", policies, "--json",
            ])
        #expect(outcome.status == (expectSuccess ? 0 : 1), "\(outcome.standardError)")
        let record = try decodedJSON(MigrationRecord.self, from: outcome.standardOutput)

        let host = expectSuccess ? "dst" : "src"
        #expect(try runningOn(lab, name) == [host])
        // The guest keeps dirtying and checking where it runs now: two more reports, no errors,
        // and after a switchover its ticks and generations go on from where the source left them.
        let lastOnSource = lab.guestReports(name, on: "src").last
        let seen = lab.guestReports(name, on: host).last?.tick ?? 0
        let settled = await eventually(within: 60) {
            lab.guestReports(name, on: host).filter { $0.tick > seen }.count >= 2
        }
        let reports = lab.guestReports(name, on: host)
        #expect(settled, "\(reports)")
        #expect(reports.allSatisfy { $0.errors == 0 }, "\(reports)")
        #expect((reports.last?.checkedPages ?? 0) > workingSetMiB * 256)
        if expectSuccess, let lastOnSource, let first = reports.first {
            #expect(first.tick > lastOnSource.tick && first.generation >= lastOnSource.generation)
        }
        return record
    }
}
