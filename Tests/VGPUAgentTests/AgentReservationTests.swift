import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUTestSupport

@Suite("vgpu-agent reservations over HTTP (real agent, real libcurl client)")
struct AgentReservationTests {
    @Test("facts round-trip: the client receives the host as inspect reads it")
    func factsRoundTrip() async throws {
        let agent = try AgentUnderTest(fixture: "a100-40gb")
        let facts = try await agent.client(token: readerToken).facts()
        let local = try ProductRunner.run(
            "vgpu-migrate",
            ["inspect", "--policies", TestData.policies.path, "--sysfs-root", agent.tree.path, "--json"])
        let expected = try JSONDecoder().decode(HostInventory.self, from: Data(local.standardOutput.utf8))
        #expect(facts.gpus == expected.gpus)
        #expect(facts.nvidiaDriverVersion == "550.90.05")
        #expect(
            try await agent.client(token: readerToken).vgpus().map(\.id) == ["3f2a7d5e-1c4b-4e8a-9d6f-0a1b2c3d4e5f"])
        #expect(try await agent.client(token: nil).health())
    }

    @Test("reserve → the mdevs appear in the tree → release → they are gone")
    func reserveAndRelease() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client()
        let reservation = try await client.reserve(request("nvidia-232", count: 2))
        #expect(reservation.state == .active)
        #expect(reservation.devices.count == 2)
        #expect(reservation.devices.allSatisfy { agent.mdevExists($0.id) && $0.interface == .mdev })
        let facts = try await client.facts()
        #expect(facts.gpus.first?.capacity(ofType: "nvidia-232").map { ($0.used, $0.free) } ?? (0, 0) == (2, 2))
        #expect(facts.gpus.first?.capacity(ofType: "nvidia-233")?.free == 0)  // homogeneity
        let released = try await client.release(reservation.id)
        #expect(released.state == .released)
        #expect(reservation.devices.allSatisfy { !agent.mdevExists($0.id) })
        #expect(try await client.facts().gpus.first?.capacity(ofType: "nvidia-233")?.free == 2)
        // Releasing again is harmless; committing a released reservation is refused.
        #expect(try await client.release(reservation.id).state == .released)
        await #expect(throws: AgentClientError.self) { try await client.commit(reservation.id) }
    }

    @Test("vendor-specific VFs: the VF takes the type number and is freed with 0")
    func vendorVF() async throws {
        let agent = try AgentUnderTest(fixture: "l40s")
        let client = agent.client()
        let reservation = try await client.reserve(request("1152", count: 2))
        let vfs = reservation.devices.map(\.id)
        #expect(vfs.count == 2)
        #expect(vfs.allSatisfy { agent.vendorType($0) == "1152" })
        #expect(reservation.devices.allSatisfy { $0.hostdevSource == .pci(PCIAddress($0.id)!) })
        await #expect(
            throws: AgentClientError.noCapacity(
                "no capacity: the host can create 2 more NVIDIA L40S-8Q (1152), 3 asked for")
        ) {
            try await client.reserve(request("1152", count: 3))
        }
        _ = try await client.release(reservation.id)
        #expect(vfs.allSatisfy { agent.vendorType($0) == "0" })
    }

    @Test("a request that prefers a GPU gets its vGPU there; the preference is kept with the reservation")
    func preferredGPU() async throws {
        let agent = try AgentUnderTest(fixture: "t4-dual")
        let client = agent.client()
        let busy = DeviceAddress("0000:3b:00.0")!
        // Without a preference the agent puts T4-4C on the empty GPU, which then carries the type.
        #expect(try await client.reserve(request("nvidia-319")).devices.map(\.gpu.description) == ["0000:5e:00.0"])
        // Left to itself it would put the next one there too; asked, it uses the other GPU.
        var asked = request("nvidia-319")
        asked.prefer = [busy]
        let reservation = try await client.reserve(asked)
        #expect(reservation.devices.map(\.gpu) == [busy])
        #expect(reservation.devices.allSatisfy { agent.mdevExists($0.id) })
        #expect(try await client.reservations().first { $0.id == reservation.id }?.request.prefer == [busy])
    }

    @Test("an idempotent retry returns the same reservation and creates nothing more")
    func idempotentRetry() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client(retries: 2)
        let first = try await client.reserve(request("nvidia-232", key: "migration-7/reserve"))
        let second = try await client.reserve(request("nvidia-232", key: "migration-7/reserve"))
        #expect(first == second)
        #expect(agent.mdevCount() == 1)
        await #expect {
            try await client.reserve(request("nvidia-232", count: 2, key: "migration-7/reserve"))
        } throws: { error in
            if case .rejected(409, "conflict", _) = error as? AgentClientError { return true }
            return false
        }
    }

    @Test("commit keeps the devices; a committed reservation cannot be released")
    func commit() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client()
        let reservation = try await client.reserve(request("nvidia-232", lease: 600))
        #expect(try await client.commit(reservation.id).state == .committed)
        #expect(try await client.reservation(reservation.id).state == .committed)
        #expect(agent.mdevExists(reservation.devices[0].id))
        await #expect(throws: AgentClientError.self) { try await client.release(reservation.id) }
        // That the lease no longer applies is shown with a controlled clock in ReservationLeaseTests.
    }

    @Test("retire: the VM left the host, its committed devices go; retiring again changes nothing")
    func retire() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client()
        let reservation = try await client.reserve(request("nvidia-232", lease: 600))
        _ = try await client.commit(reservation.id)
        let retired = try await client.retire(reservation.id)
        #expect(retired.state == .released)
        #expect(!agent.mdevExists(reservation.devices[0].id))
        #expect(try await client.retire(reservation.id) == retired)
        // An active reservation is simply released.
        let active = try await client.reserve(request("nvidia-232", lease: 600, key: "second"))
        #expect(try await client.retire(active.id).state == .released)
        #expect(!agent.mdevExists(active.devices[0].id))
    }

    @Test(
        "--persist-mdevs: commit defines each mdev with mdevctl, retire undefines it; without the flag mdevctl is not called"
    )
    func persistence() async throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-mdevctl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        // A stand-in for mdevctl that records how it was called.
        let calls = scratch.appendingPathComponent("calls")
        let program = scratch.appendingPathComponent("mdevctl")
        try "#!/bin/sh\necho \"$@\" >> '\(calls.path)'\n".write(to: program, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: program.path)

        let agent = try AgentUnderTest(fixture: "t4-b", arguments: ["--persist-mdevs", "--mdevctl", program.path])
        let reservation = try await agent.client().reserve(request("nvidia-232"))
        #expect(!FileManager.default.fileExists(atPath: calls.path))
        let committed = try await agent.client().commit(reservation.id)
        #expect(committed.reason == nil)
        let recorded = try String(contentsOf: calls, encoding: .utf8)
        #expect(recorded == "define --uuid \(reservation.devices[0].id) --parent 0000:3b:00.0 --type nvidia-232\n")
        // The VM left: the definition goes with the device.
        _ = try await agent.client().retire(reservation.id)
        #expect(
            try String(contentsOf: calls, encoding: .utf8)
                == recorded + "undefine --uuid \(reservation.devices[0].id)\n")

        let failing = scratch.appendingPathComponent("mdevctl-failing")
        try "#!/bin/sh\necho 'Parent 0000:3b:00.0 not found' >&2\nexit 1\n".write(
            to: failing, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: failing.path)
        let other = try AgentUnderTest(fixture: "t4-b", arguments: ["--persist-mdevs", "--mdevctl", failing.path])
        let second = try await other.client().reserve(request("nvidia-232"))
        let kept = try await other.client().commit(second.id)
        #expect(kept.state == .committed)
        #expect(kept.reason?.contains("Parent 0000:3b:00.0 not found") == true)
        #expect(kept.reason?.contains("will not survive a host reboot") == true)
    }

    @Test("an expired lease frees the device by itself")
    func leaseExpiry() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client()
        let reservation = try await client.reserve(request("nvidia-232", lease: 2))
        // The agent answered with the device it created; the lease then runs out on its own.
        #expect(reservation.state == .active && reservation.devices.count == 1)
        let expired = try await eventually(within: 60) {
            try await client.reservation(reservation.id).state == .expired
        }
        #expect(expired)
        #expect(!agent.mdevExists(reservation.devices[0].id))
        #expect(try await client.reservation(reservation.id).reason?.contains("lease of 2 s ended") == true)
    }

    @Test("an agent restart (even SIGKILL) keeps the reservations and their devices")
    func restartKeepsReservations() async throws {
        let agent = try AgentUnderTest(fixture: "l40s")
        let kept = try await agent.client().reserve(request("1152", count: 1))
        let released = try await agent.client().reserve(request("1152", count: 1))
        _ = try await agent.client().release(released.id)
        agent.process?.kill()
        try agent.start()
        let client = agent.client()
        let after = try await client.reservations()
        #expect(after.map(\.id) == [kept.id, released.id])
        #expect(try await client.reservation(kept.id).state == .active)
        #expect(try await client.reservation(released.id).state == .released)
        #expect(agent.vendorType(kept.devices[0].id) == "1152")
        // The new process counts the kept reservation: 2 (fixture) + 1 kept + 3 = the GPU's 6 L40S-8Q.
        #expect(try await client.reserve(request("1152", count: 3)).devices.count == 3)
        await #expect(throws: AgentClientError.self) { try await client.reserve(request("1152", count: 1)) }
    }

    @Test("32 simultaneous requests for 8 free vGPUs: exactly 8 succeed, 24 get 'no capacity', no device twice")
    func concurrentReservations() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        for round in 1...5 {
            let outcomes = await withTaskGroup(of: Result<Reservation, AgentClientError>.self) { group in
                for index in 0..<32 {
                    // One client per request: each has its own connection and queue.
                    let client = agent.client()
                    group.addTask {
                        do throws(AgentClientError) {
                            return .success(
                                try await client.reserve(
                                    request("nvidia-231", owner: "m\(index)", key: "r\(round)-\(index)")))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                var outcomes: [Result<Reservation, AgentClientError>] = []
                for await outcome in group { outcomes.append(outcome) }
                return outcomes
            }
            let reservations = outcomes.compactMap { try? $0.get() }
            let refusals = outcomes.compactMap { outcome -> AgentClientError? in
                if case .failure(let error) = outcome { return error }
                return nil
            }
            #expect(reservations.count == 8, "round \(round)")
            #expect(refusals.count == 24, "round \(round)")
            #expect(
                refusals.allSatisfy { if case .noCapacity = $0 { true } else { false } },
                "round \(round): \(refusals.first.map(\.description) ?? "")")
            let devices = reservations.flatMap(\.devices).map(\.id)
            #expect(Set(devices).count == 8)
            #expect(agent.mdevCount() == 8)
            for reservation in reservations { _ = try await agent.client().release(reservation.id) }
            #expect(agent.mdevCount() == 0)
        }
    }

    @Test("/metrics counts reservations by state in Prometheus text format")
    func metrics() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let reservation = try await agent.client().reserve(request("nvidia-232"))
        _ = try await agent.client().commit(reservation.id)
        let (status, body) = try await agent.client(token: readerToken).send("GET", "/metrics")
        let text = String(decoding: body, as: UTF8.self)
        #expect(status == 200)
        #expect(text.contains("# TYPE vgpu_agent_reservations gauge"))
        #expect(text.contains("vgpu_agent_reservations{state=\"committed\"} 1"))
        #expect(text.contains("vgpu_agent_reservations_created_total 1"))
    }
}
