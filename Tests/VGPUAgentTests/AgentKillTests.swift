import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUTestSupport

/// The agent SIGKILLed at random instants while it reserves and releases, over an emulated tree.
@Suite("vgpu-agent killed mid-change")
struct AgentKillTests {
    static let kills = 30

    @Test(
        "killed at any instant of a reserve/release loop, the agent starts again and the tree matches its reservations",
        arguments: [("mtty", ["mtty-1", "mtty-2"]), ("t4-a", ["nvidia-227", "nvidia-232", "nvidia-319"])])
    func killLoop(fixture: String, types: [String]) async throws {
        let agent = try AgentUnderTest(fixture: fixture)
        let original = try availableInstances(agent.tree)
        let handMade = Set(agent.mdevs())
        var interrupted = 0
        for round in 0..<Self.kills {
            let loop = Task { try await reserveAndRelease(agent.client(), types: types) }
            try await Task.sleep(for: .milliseconds(Int.random(in: 10...400)))
            agent.process?.kill()
            if case .failure = await loop.result { interrupted += 1 }
            // It always starts again: no file it reads was left half written.
            try agent.start()
            let client = agent.client()
            let live = try await client.reservations().filter { $0.state == .active }
            let devices = Set(live.flatMap(\.devices).map(\.id))
            let inTree = Set(agent.mdevs())
            #expect(inTree == devices.union(handMade), "round \(round): tree \(inTree), reservations \(devices)")
            let leftovers = try temporaryLeftovers(agent.tree)
            #expect(leftovers.isEmpty, "round \(round): \(leftovers)")
            if fixture == "mtty" {
                // mtty's 24 ports, less those the devices there take.
                let ports = try inTree.reduce(0) { $0 + (try mttyType(agent.tree, $1) == "mtty-2" ? 2 : 1) }
                let counts = try availableInstances(agent.tree)
                #expect(counts.values.contains(24 - ports) && counts.values.contains((24 - ports) / 2), "\(counts)")
            }
        }
        // Most kills land while a request is being served (the loop sends one after another).
        #expect(interrupted > Self.kills / 2, "\(interrupted) of \(Self.kills) kills interrupted a request")
        // With every reservation released, the tree shows what it showed before the first one.
        let client = agent.client()
        for reservation in try await client.reservations() where reservation.state == .active {
            _ = try await client.release(reservation.id)
        }
        #expect(Set(agent.mdevs()) == handMade)
        #expect(try availableInstances(agent.tree) == original)
        print("\(fixture): \(Self.kills) kills, \(interrupted) during a request")
    }

    /// Reserves one or two vGPUs at a time and releases them, until the agent stops answering.
    func reserveAndRelease(_ client: AgentClient, types: [String]) async throws {
        var held: [String] = []
        while true {
            if held.count < 2 && Bool.random() {
                let type = types.randomElement()!
                if let reservation = try? await client.reserve(
                    request(type, count: type == "mtty-2" ? 1 : 2, lease: 600))
                {
                    held.append(reservation.id)
                } else {
                    // No capacity left, or the agent is gone: the health probe tells which.
                    _ = try await client.health()
                }
            } else if let id = held.popLast() {
                _ = try await client.release(id)
            }
        }
    }

    func mttyType(_ tree: URL, _ uuid: String) throws -> String {
        let link = try FileManager.default.destinationOfSymbolicLink(
            atPath: tree.appendingPathComponent("sys/bus/mdev/devices/\(uuid)/mdev_type").path)
        return String(link.split(separator: "/").last ?? "")
    }

    /// Every type's `available_instances`, which must always read as a number.
    func availableInstances(_ tree: URL) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for path in try files(tree) where path.hasSuffix("/available_instances") {
            let text = try String(contentsOf: tree.appendingPathComponent(path), encoding: .utf8)
            counts[path] = try #require(Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), "\(path): '\(text)'")
        }
        return counts
    }

    func temporaryLeftovers(_ tree: URL) throws -> [String] {
        try files(tree).filter { $0.contains(".vgpu-tmp") }
    }

    /// Every path under the tree, links not followed.
    func files(_ tree: URL) throws -> [String] {
        let enumerator = try #require(FileManager.default.enumerator(atPath: tree.path))
        return enumerator.compactMap { $0 as? String }
    }
}
