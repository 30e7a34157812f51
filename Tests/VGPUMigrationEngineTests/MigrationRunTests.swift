import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUTestSupport

/// The migration run with a vGPU VM, in memory and virtual time: what becomes of the destination
/// reservation and the source vGPU when the VM completes, is aborted or fails.
@Suite("migration run (in memory, virtual time): reservation committed on success, released on abort or failure")
struct RunTests {
    @Test(
        "completed: the reserved vGPU is in the destination XML, the reservation committed, the source vGPU given back")
    func completes() async throws {
        let bench = try await EngineBench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-ok", mdev: sourceDevice, memoryMiB: 1024)

        let record = try await bench.run("vm-ok", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .completed, "\(bench.events.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .completed])
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit, .releaseSource])
        let reservation = try #require(record.reservation)
        #expect(reservation.state == .committed)
        let reserved = try #require(reservation.devices.first?.id)
        let sent = try #require(await bench.lab.destinationXMLs.first)
        #expect(sent.contains(reserved) && !sent.contains(sourceDevice))
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.committed])
        #expect(await bench.destinationAgent.devices == [reserved])
        #expect(await bench.lab.guest("vm-ok", on: "dst")?.active == true)
        #expect(await bench.lab.guest("vm-ok", on: "src") == nil)
        #expect(await bench.sourceAgent.devices.isEmpty)
        #expect(record.events.last?.details["source_vgpu"] == "released mdev \(sourceDevice) on src")
        #expect(record.finalStats?.downtimeMilliseconds != nil)
        #expect(try await bench.history.record(id: record.id) == record)
        // The events tell the same story, in order, with the job's progress between.
        let states = bench.events.all.compactMap { if case .transition(_, let state, _) = $0 { state } else { nil } }
        #expect(states == [.checking, .reserving, .migrating, .completing, .completed])
        #expect(bench.events.all.contains { if case .progress = $0 { true } else { false } })
        #expect(record.notes == nil)
    }

    @Test("aborted while migrating (as 'vgpu-migrate abort' does): cancelled, the reservation released, VM on src")
    func abortReleases() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-abort", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        let run = bench.run(
            "vm-abort", policy: try EngineBench.policy("fixed-300ms"), force: EngineBench.overFixedCap)
        // Another handle on the domain aborts its job two virtual seconds in.
        let lab = bench.lab
        bench.clock.whenMoved { [start = bench.clock.now] now in
            if now.timeIntervalSince(start) >= 2, await lab.isMigrating("vm-abort", on: "src") {
                try? await FakeHypervisor(lab: lab, host: "src").guestDomain(named: "vm-abort")?.abortJob()
            }
        }

        let record = try await run.run()

        #expect(record.state == .cancelled, "\(bench.events.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .cancelled])
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        #expect(record.reservation?.state == .released)
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.released])
        #expect(await bench.destinationAgent.devices.isEmpty)
        #expect(await bench.lab.guest("vm-abort", on: "src")?.active == true)
        #expect(await bench.lab.guest("vm-abort", on: "dst") == nil)
        #expect(record.samples.count >= 50)
    }

    @Test("the operator's abort request: cancelled, the abort recorded as an intent, the reservation released")
    func operatorAbort() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-ctrl-c", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        let abort = AbortRequest()
        bench.clock.whenMoved { [start = bench.clock.now] now in
            if now.timeIntervalSince(start) >= 1 { abort.request() }
        }
        let record = try await bench.run(
            "vm-ctrl-c", policy: try EngineBench.policy("fixed-300ms"), force: EngineBench.overFixedCap, abort: abort
        ).run()

        #expect(record.state == .cancelled, "\(bench.events.all)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .abort, .release])
        #expect(record.intents[2].details["reason"] == "operator (Ctrl-C)")
        #expect(await bench.destinationAgent.devices.isEmpty)
        #expect(await bench.lab.guest("vm-ctrl-c", on: "src")?.active == true)
    }

    @Test("the destination fails during the migration: failed, the reservation released, VM on src")
    func destinationFailureReleases() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-dst-down", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        let lab = bench.lab
        bench.clock.whenMoved { [start = bench.clock.now] now in
            if now.timeIntervalSince(start) >= 2 {
                await lab.failMigrations(to: "dst", message: "End of file while reading data: Input/output error")
            }
        }
        let record = try await bench.run(
            "vm-dst-down", policy: try EngineBench.policy("fixed-300ms"), force: EngineBench.overFixedCap
        ).run()

        #expect(record.state == .failed, "\(bench.events.all)")
        #expect(record.events.last?.reason.contains("End of file while reading data") == true)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .release])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.released])
        #expect(await bench.lab.guest("vm-dst-down", on: "src")?.active == true)
    }

    @Test("the policy's completion timeout aborts a guest that cannot converge: failed, the reservation released")
    func timeoutReleases() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-slow", memoryMiB: 512, dirtyMiBPerSecond: 4096)
        // 4 s per GiB of RAM and framebuffer: about 18 virtual seconds for this guest.
        let policy = try EngineBench.policy("fixed-300ms", completionSecondsPerGiB: 4, onTimeout: .abort)

        let record = try await bench.run("vm-slow", policy: policy, force: EngineBench.overFixedCap).run()

        #expect(record.state == .failed, "\(bench.events.all)")
        #expect(record.events.last?.reason.contains("aborted by the policy: completion timeout") == true)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .abort, .release])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.released])
        #expect(await bench.lab.guest("vm-slow", on: "src")?.active == true)
        #expect(await bench.lab.downtimeLimits.allSatisfy { $0 <= 300 })
        // The abort came when the policy says, in virtual time.
        let abort = try #require(record.intents.first { $0.action == .abort })
        let started = try #require(record.intents.first { $0.action == .startMigration })
        let timeout = DowntimeController(
            policy: policy, memoryBytes: 512 << 20, framebufferBytes: 4 << 30, untrackedFramebufferBytes: 4 << 30
        ).completionTimeoutSeconds
        #expect(abs(abort.time.timeIntervalSince(started.time) - timeout) < 0.1, "\(timeout)")
    }

    @Test("the destination's last vGPU is taken between check and reserve: failed before any migration, nothing on dst")
    func noCapacityStopsBeforeMigrating() async throws {
        let bench = try await EngineBench(destinationSlots: 0)
        try await bench.startGuest("vm-full", memoryMiB: 512)
        let record = try await bench.run("vm-full", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .failed, "\(bench.events.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .failed])
        #expect(record.events.last?.reason.contains("no capacity") == true, "\(record.events.last?.reason ?? "")")
        #expect(record.intents.map(\.action) == [.reserve])
        #expect(record.reservation == nil)
        #expect(await bench.lab.destinationXMLs.isEmpty)
        #expect(await bench.lab.guest("vm-full", on: "src")?.active == true)
    }

    @Test("libvirt reports an error after the destination took over: completed, the reservation committed")
    func errorAfterSwitchoverCompletes() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-confirm", memoryMiB: 1024)
        await bench.lab.failAfterSwitchover(message: "internal error: confirm phase: connection reset")

        let record = try await bench.run("vm-confirm", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .completed, "\(bench.events.all)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.committed])
        #expect(bench.events.notices.contains { $0.contains("but the VM runs on dst: it switched over") })
    }

    @Test(
        "the destination's agent is gone at the switchover: unknown, its reservation kept, the source's vGPU given back; reconcile commits once it is back"
    )
    func commitFailureKeepsReservation() async throws {
        let bench = try await EngineBench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-commit", mdev: sourceDevice, memoryMiB: 1024)
        let agent = bench.destinationAgent
        await bench.lab.setOnSwitchover { _ in await agent.setAnswering(false) }

        let record = try await bench.run("vm-commit", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .unknown, "\(bench.events.all)")
        #expect(record.events.map(\.to) == [.checking, .reserving, .migrating, .completing, .unknown])
        let reason = try #require(record.events.last?.reason)
        #expect(reason.contains("the VM runs on dst") && reason.contains("vgpu-migrate reconcile"), "\(reason)")
        #expect(record.intents.map(\.action) == [.reserve, .startMigration, .commit, .releaseSource])
        #expect(await bench.sourceAgent.devices.isEmpty)
        #expect(record.reservation?.state == .active)

        // The agent back, with its book as it left it: reconcile commits.
        await agent.setAnswering(true)
        let settled = try await bench.reconciler().reconcileAll(vm: "vm-commit")
        #expect(settled.map(\.state) == [.completed], "\(bench.events.all)")
        #expect(try await agent.reservations().map(\.state) == [.committed])
        #expect(await agent.devices == Set(record.reservation?.devices.map(\.id) ?? []))
        #expect(try await bench.history.unfinished().isEmpty)
    }

    @Test(
        "libvirt reports an error, the VM runs on the destination and the source does not answer: unknown; reconcile waits, then commits"
    )
    func unclearOutcomeKeepsReservation() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-unclear", memoryMiB: 1024)
        await bench.lab.failAfterSwitchover(message: "End of file while reading data", thenUnreachable: "src")

        let record = try await bench.run("vm-unclear", policy: try EngineBench.policy("adaptive")).run()

        #expect(record.state == .unknown, "\(bench.events.all)")
        #expect(record.events.last?.reason.contains("it runs on dst and src cannot be asked") == true)
        #expect(record.intents.map(\.action) == [.reserve, .startMigration])
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.active])

        let kept = try await bench.reconciler().reconcileAll(vm: "vm-unclear")
        #expect(kept.map(\.state) == [.unknown])
        #expect(kept.first?.events.count == record.events.count)
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.active])
        #expect(
            bench.events.all.contains {
                if case .settled(let id, .unknown, let reason) = $0 {
                    id == record.id && reason.hasPrefix("cannot tell where the VM runs")
                } else {
                    false
                }
            })

        await bench.lab.setReachable("src")
        let settled = try await bench.reconciler().reconcileAll(vm: "vm-unclear")
        #expect(settled.map(\.state) == [.completed], "\(bench.events.all)")
        #expect(try await bench.destinationAgent.reservations().map(\.state) == [.committed])
        #expect(try await bench.history.unfinished().isEmpty)
    }

    @Test("reconcile finds the VM running on both hosts: left unknown, nothing committed or released")
    func reconcileLeavesSplitVMUnknown() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-both", memoryMiB: 1024)
        let record = try await bench.run("vm-both", policy: try EngineBench.policy("adaptive")).run()
        #expect(record.state == .completed, "\(bench.events.all)")
        // A second migration of the VM, dst → src, abandoned while a copy also runs on src.
        var abandoned = MigrationRecord(
            id: "abandoned", vm: "vm-both", source: "dst", destination: "src", policy: "adaptive",
            at: bench.clock.now.addingTimeInterval(-600))
        for state in [MigrationState.checking, .reserving, .migrating] {
            try abandoned.transition(to: state, reason: "step", at: abandoned.createdAt)
        }
        abandoned.intents = [Intent(time: abandoned.createdAt, action: .startMigration)]
        try await bench.history.begin(abandoned)
        await bench.lab.start("vm-both", on: "src", xml: try await bench.lab.xml("vm-both", on: "dst"))
        let before = try await bench.destinationAgent.reservations()

        let settled = try await bench.reconciler().reconcileAll(vm: "vm-both")

        #expect(settled.map(\.state) == [.unknown], "\(bench.events.all)")
        #expect(settled.first?.events.last?.reason.contains("it runs on both src and dst") == true)
        #expect(try await bench.destinationAgent.reservations() == before)
        #expect(try await bench.history.unfinished().map(\.id) == ["abandoned"])
    }

    @Test("a cordoned destination takes no migration: refused before anything is recorded or reserved")
    func cordonedDestination() async throws {
        let bench = try await EngineBench()
        try await bench.startGuest("vm-cordon", memoryMiB: 512)
        _ = try await bench.history.cordon(
            HostCordon(host: "dst", reason: "driver update", since: bench.clock.now, by: "ops"))

        await #expect {
            try await bench.run("vm-cordon", policy: try EngineBench.policy("adaptive")).run()
        } throws: { error in
            guard let error = error as? MigrationEngineError else { return false }
            return error.kind == .configuration
                && error.message == "dst is cordoned (driver update, by ops): no migration goes there"
        }
        #expect(try await bench.history.list(HistoryFilter()).isEmpty)
        #expect(try await bench.destinationAgent.reservations().isEmpty)
        #expect(await bench.lab.guest("vm-cordon", on: "src")?.active == true)
    }

    @Test("a drain's planned device goes to the agent with the request; a vGPU reserved elsewhere is named")
    func preferredDevice() async throws {
        let bench = try await EngineBench()
        let sourceDevice = try await bench.sourceVGPU()
        try await bench.startGuest("vm-plan", mdev: sourceDevice, memoryMiB: 512)
        let planned = DeviceAddress("0000:5e:00.0")!
        var run = bench.run("vm-plan", policy: try EngineBench.policy("adaptive"))
        run.preferredDevices = [planned]

        let record = try await run.run()

        #expect(record.state == .completed, "\(bench.events.all)")
        #expect(try await bench.destinationAgent.reservations().map(\.request.prefer) == [[planned]])
        // The in-memory agent has one GPU, 0000:3b:00.0: the step says the vGPU is not where planned.
        let reserved = try #require(record.events.first { $0.to == .migrating })
        #expect(reserved.reason == "reserved 1 vGPU(s) on dst, on 0000:3b:00.0, not the planned 0000:5e:00.0")
        #expect(
            MigrationRun.outsidePreference(
                record.reservation?.devices ?? [], [DeviceAddress("0000:3b:00.0")!]) == nil)
    }
}
