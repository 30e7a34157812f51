import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUMigrationLibvirt

/// Defines and starts a guest on the lab's source, expecting both to succeed.
func startGuest(_ lab: Lab, name: String, memoryMiB: Int) throws {
    for outcome in try lab.defineGuest(name, memoryMiB: memoryMiB) {
        #expect(outcome.status == 0, "\(outcome.standardError)")
    }
}

/// The data stream goes over the link between the lab hosts' network namespaces, to `address`.
func dataPath(to address: String) -> MigrationParameters {
    MigrationParameters(migrateURI: "tcp://\(address)", listenAddress: address)
}

@Suite("libvirt migration against the lab's real daemons", .serialized, .twoHostLab, .tags(.lab))
struct LibvirtMigrationLabTests {
    @Test(
        "a running guest migrates src → dst (its connection opened ahead) and back (opened by the call); the completed job reports its statistics"
    )
    func migrateAndBack() async throws {
        let lab = try #require(Lab.current)
        try startGuest(lab, name: "mig-idle", memoryMiB: 128)
        let source = try await LibvirtConnection.open(uri: lab.sourceURI)
        let destination = try await LibvirtConnection.open(uri: lab.destinationURI)
        let guest = try #require(try await source.lookupDomain("mig-idle"))
        guest.prepareMigration()
        guest.prepareMigration()
        var parameters = dataPath(to: lab.destinationAddress)
        parameters.destinationXML = try await guest.xml(migratable: true)
        try await guest.migrate(to: lab.destinationURI, parameters: parameters, flags: .standard)

        #expect(try await source.lookupDomain("mig-idle") == nil)  // undefined on the source
        let moved = try #require(try await destination.lookupDomain("mig-idle"))
        #expect(try await moved.isActive())
        let stats = try await moved.jobStats(completed: true)
        #expect(stats.type == 3)  // VIR_DOMAIN_JOB_COMPLETED
        #expect((stats.timeElapsedMilliseconds ?? 0) > 0)
        #expect((stats.dataTotalBytes ?? 0) >= 128 << 20)
        #expect(stats.downtimeMilliseconds != nil)

        try await moved.migrate(
            to: lab.sourceURI, parameters: dataPath(to: lab.sourceAddress),
            flags: [.live, .peerToPeer, .persistDestination, .undefineSource])
        #expect(try await destination.lookupDomain("mig-idle") == nil)
        #expect(try await source.lookupDomain("mig-idle")?.isActive() == true)
    }

    @Test("a connection opened ahead that failed (the daemon's socket was away) is opened again by the migration")
    func preparedConnectionFailed() async throws {
        let lab = try #require(Lab.current)
        try startGuest(lab, name: "mig-retry", memoryMiB: 128)
        defer { lab.removeGuest("mig-retry") }
        let source = try await LibvirtConnection.open(uri: lab.sourceURI)
        let guest = try #require(try await source.lookupDomain("mig-retry"))
        let socket = try #require(lab.sourceURI.split(separator: "socket=").last.map(String.init))
        try FileManager.default.moveItem(atPath: socket, toPath: socket + ".away")
        let putBack = { try FileManager.default.moveItem(atPath: socket + ".away", toPath: socket) }
        defer { if FileManager.default.fileExists(atPath: socket + ".away") { try? putBack() } }
        guest.prepareMigration()
        let openedAhead = await Task.detached { guest.migrationLine.opened() }.value
        try putBack()
        #expect(openedAhead == false)

        var parameters = dataPath(to: lab.destinationAddress)
        parameters.destinationXML = try await guest.xml(migratable: true)
        try await guest.migrate(to: lab.destinationURI, parameters: parameters, flags: .standard)
        let destination = try await LibvirtConnection.open(uri: lab.destinationURI)
        #expect(try await destination.lookupDomain("mig-retry")?.isActive() == true)
    }

    @Test("migration events: each new pass over memory, then the job's end with its final statistics")
    func migrationEvents() async throws {
        let lab = try #require(Lab.current)
        defer { lab.removeGuest("mig-events") }
        let start = try lab.startCheckingGuest("mig-events", dirtyMiBPerSecond: 0, workingSetMiB: 64, memoryMiB: 256)
        #expect(start.status == 0, "\(start.standardError)")
        // Once the guest reports, its working set is written: the first pass has data to send.
        for _ in 0..<300 where lab.guestReports("mig-events", on: "src").isEmpty {
            try await Task.sleep(for: .milliseconds(100))
        }
        let source = try await LibvirtConnection.open(uri: lab.sourceURI)
        let guest = try #require(try await source.lookupDomain("mig-events"))
        let subscription = try await guest.migrationEvents()
        let collector = Task {
            var seen: [MigrationEvent] = []
            for await event in subscription.events {
                seen.append(event)
                if case .jobCompleted = event { break }
            }
            return seen
        }
        var parameters = dataPath(to: lab.destinationAddress)
        parameters.bandwidthMiBPerSecond = 32  // 64 MiB written: about two seconds of first pass
        try await guest.migrate(to: lab.destinationURI, parameters: parameters, flags: .standard)
        // The events may trail the call's return a little; the stream ends at the latest here.
        let deadline = Task {
            try await Task.sleep(for: .seconds(15))
            await subscription.cancel()
        }
        let events = await collector.value
        deadline.cancel()
        await subscription.cancel()

        let passes = events.compactMap { event -> Int? in
            if case .iteration(let pass) = event { return pass }
            return nil
        }
        #expect(!passes.isEmpty, "\(events)")
        #expect(passes == passes.sorted() && Set(passes).count == passes.count, "\(passes)")
        #expect((passes.last ?? 0) >= 2, "\(passes)")
        let completed = events.compactMap { event -> DomainJobStats? in
            if case .jobCompleted(let stats) = event { return stats }
            return nil
        }
        let stats = try #require(completed.first, "no job-completed event: \(events)")
        #expect(stats.downtimeMilliseconds != nil)
        #expect((stats.dataTotalBytes ?? 0) >= 256 << 20)
        #expect((stats.memoryIteration ?? 0) >= UInt64(passes.last ?? 0))
    }

    @Test("a running migration reports job statistics, takes a new downtime limit, and can be aborted")
    func abortRunning() async throws {
        let lab = try #require(Lab.current)
        // 16 GiB at 1 MiB/s: even with QEMU's zero-page encoding the job runs for about half a minute.
        try startGuest(lab, name: "mig-abort", memoryMiB: 16384)
        let source = try await LibvirtConnection.open(uri: lab.sourceURI)
        let destination = try await LibvirtConnection.open(uri: lab.destinationURI)
        let guest = try #require(try await source.lookupDomain("mig-abort"))
        var parameters = dataPath(to: lab.destinationAddress)
        parameters.bandwidthMiBPerSecond = 1
        let migration = Task {
            try await guest.migrate(to: lab.destinationURI, parameters: parameters, flags: .standard)
        }

        var running: DomainJobStats?
        for _ in 0..<400 {
            let stats = try await guest.jobStats()
            if stats.isActive {
                running = stats
                break
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        let stats = try #require(running, "the migration job never showed up as running")
        // A lower limit than QEMU's default keeps it from switching over before the abort.
        try await guest.setMaxDowntime(milliseconds: 10)
        try await guest.abortJob()
        #expect(stats.type == 1 || stats.type == 2)
        #expect(stats.timeElapsedMilliseconds != nil)

        await #expect {
            try await migration.value
        } throws: { error in
            guard let error = error as? LibvirtError else { return false }
            return error.operation.hasPrefix("migrating mig-abort to ") && !error.message.isEmpty
        }
        #expect(try await guest.isActive())
        #expect(try await destination.lookupDomain("mig-abort") == nil)
        #expect(try await guest.jobStats().isActive == false)
    }
}
