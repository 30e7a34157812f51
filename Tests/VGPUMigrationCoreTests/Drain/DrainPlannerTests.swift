import Foundation
import Testing
import VGPUTestSupport

@testable import VGPUMigrationCore

@Suite("Drain plans: every VM of a host placed together, capacity booked across the plan")
struct DrainPlannerTests {
    typealias F = CheckFixtures
    typealias Fleet = DrainFleet

    /// A drained T4 host with two GPUs: VMs of the given T4 type names, on GPU 0 then GPU 1.
    static func t4Source(_ vms: [(name: String, type: String)]) throws -> (HostInventory, [DrainGuest]) {
        var facts = try Fleet.host("t4-b")
        var second = facts.gpus[0]
        second.address = DeviceAddress("0000:af:00.0")!
        for index in second.functions.indices { second.functions[index].address = second.address }
        facts.gpus.append(second)
        var guests: [DrainGuest] = []
        for vm in vms {
            let typeID = try #require(Fleet.typeID(vm.type, gpu: 0, of: facts))
            let domain = try #require(
                Fleet.addGuest(vm.name, typeID: typeID, gpu: 0, to: &facts)
                    ?? Fleet.addGuest(vm.name, typeID: typeID, gpu: 1, to: &facts), "room for \(vm.name)")
            guests.append(DrainGuest(name: vm.name, source: "src", domain: domain))
        }
        return (facts, guests)
    }

    /// What placing the VMs one at a time does: `check --to auto` for each on the hosts as they
    /// are now, the best destination taken, nothing booked.
    static func oneAtATime(_ problem: DrainProblem) -> [String: String] {
        var chosen: [String: String] = [:]
        for guest in problem.guests {
            let candidates = problem.destinations.compactMap { destination -> DestinationRanking.Candidate? in
                guard case .ready(let facts) = destination.status else { return nil }
                let report = CompatibilityRules.evaluate(
                    CheckSubject(
                        vmName: guest.name, vmState: .running, domain: guest.domain, sourceName: guest.source,
                        source: problem.sources[guest.source]!, destinationName: destination.name, destination: facts),
                    policy: problem.policy)
                return .init(
                    host: destination.name, report: report,
                    packing: DestinationRanking.packing(
                        of: guest.domain, from: problem.sources[guest.source]!, on: facts), unreachable: nil)
            }
            let ranking = DestinationRanking(vm: guest.name, source: guest.source, policy: "", candidates: candidates)
            if let best = ranking.best { chosen[guest.name] = best.host }
        }
        return chosen
    }

    @Test("a 16 GB and an 8 GB VM both fit the one empty T4 alone; one at a time they mix sizes, the plan splits them")
    func homogeneity() throws {
        let (source, guests) = try Self.t4Source([("big", "GRID T4-16Q"), ("mid", "GRID T4-8Q")])
        let problem = DrainProblem(
            sources: ["src": source], guests: guests,
            destinations: [
                .init(name: "t4-b", status: .ready(try Fleet.host("t4-b"))),
                .init(name: "t4-dual", status: .ready(try Fleet.host("t4-dual"))),
            ], policy: try F.policy("adaptive"))
        // One at a time, both VMs take t4-b's only GPU: a 16 GB and an 8 GB vGPU on one T4.
        let naive = Self.oneAtATime(problem)
        #expect(naive == ["big": "t4-b", "mid": "t4-b"])

        let plan = DrainPlanner.plan(problem)
        #expect(DrainPlanViolations(plan: plan, problem: problem).problems == [])
        #expect(plan.unplaced == [])
        let big = try #require(plan.placement(of: "big"))
        let mid = try #require(plan.placement(of: "mid"))
        #expect(big.destination != mid.destination || big.vgpus[0].gpu != mid.vgpus[0].gpu)
        // t4-dual's GPU 3b carries a 4 GB vGPU: neither size may go there.
        for placement in [big, mid] where placement.destination == "t4-dual" {
            #expect(placement.vgpus[0].gpu == DeviceAddress("0000:5e:00.0"))
        }
    }

    @Test("three 8 GB VMs and room for two: one at a time all three aim at it; the plan books two and names the third")
    func doubleBooking() throws {
        let (source, guests) = try Self.t4Source([("a", "GRID T4-8Q"), ("b", "GRID T4-8Q"), ("c", "GRID T4-8Q")])
        let problem = DrainProblem(
            sources: ["src": source], guests: guests,
            destinations: [
                .init(name: "t4-dual", status: .ready(try Fleet.host("t4-dual"))),
                .init(name: "t4-full", status: .ready(try Fleet.host("t4-full"))),
            ], policy: try F.policy("adaptive"))
        #expect(Self.oneAtATime(problem) == ["a": "t4-dual", "b": "t4-dual", "c": "t4-dual"])

        let plan = DrainPlanner.plan(problem)
        #expect(DrainPlanViolations(plan: plan, problem: problem).problems == [])
        #expect(plan.placements.count == 2)
        #expect(Set(plan.placements.map(\.destination)) == ["t4-dual"])
        #expect(Set(plan.placements.flatMap(\.vgpus).map(\.gpu)) == [DeviceAddress("0000:5e:00.0")!])
        let refusal = try #require(plan.unplaced.only)
        #expect(refusal.vm == "c")
        let dual = try #require(refusal.reasons.first { $0.hasPrefix("t4-dual:") })
        #expect(dual.contains("vgpu.capacity") && dual.contains("0 more GRID T4-8Q"), "\(dual)")
        let full = try #require(refusal.reasons.first { $0.hasPrefix("t4-full:") })
        #expect(full.contains("vgpu.capacity"), "\(full)")
    }

    @Test("vendor-specific VFs: each vGPU gets a VF of its own, and 8 GB VMs fill the free VFs of the L40S")
    func sriovVFs() throws {
        var source = try Fleet.host("l40s")
        let typeID = try #require(Fleet.typeID("NVIDIA L40S-8Q", gpu: 0, of: source))
        var guests: [DrainGuest] = []
        for number in 0..<4 {
            let domain = try #require(Fleet.addGuest("vm\(number)", typeID: typeID, gpu: 0, to: &source))
            guests.append(DrainGuest(name: "vm\(number)", source: "src", domain: domain))
        }
        let destination = try Fleet.host("l40s")
        let free = try #require(destination.gpus[0].capacity(ofType: typeID)?.free)
        let problem = DrainProblem(
            sources: ["src": source], guests: guests, destinations: [.init(name: "dst", status: .ready(destination))],
            policy: try F.policy("adaptive"))
        let plan = DrainPlanner.plan(problem)
        #expect(DrainPlanViolations(plan: plan, problem: problem).problems == [])
        #expect(plan.placements.count == min(4, free))
        let functions = plan.placements.flatMap(\.vgpus).map(\.function)
        #expect(Set(functions).count == functions.count)
        #expect(
            !functions.contains(DeviceAddress("0000:41:00.4")!) && !functions.contains(DeviceAddress("0000:41:00.5")!))
    }

    @Test("mtty: dual-port devices take the kernel's ports; the thirteenth has no room on a 24-port host")
    func mttyPorts() throws {
        var source = try Fleet.host("mtty-empty")
        var extra = try Fleet.host("mtty-empty")
        var guests: [DrainGuest] = []
        for number in 0..<13 {
            let name = "vm\(String(format: "%02d", number))"
            let domain = try #require(
                Fleet.addGuest(name, typeID: "mtty-2", gpu: 0, memoryGiB: 1, to: &source)
                    ?? Fleet.addGuest(name, typeID: "mtty-2", gpu: 0, memoryGiB: 1, to: &extra))
            guests.append(DrainGuest(name: name, source: "src", domain: domain))
        }
        source.gpus += extra.gpus.map { gpu in
            var gpu = gpu
            gpu.address = .named("mtty-extra")
            return gpu
        }
        let problem = DrainProblem(
            sources: ["src": source], guests: guests,
            destinations: [.init(name: "dst", status: .ready(try Fleet.host("mtty-empty")))],
            policy: try F.policy("adaptive"))
        let plan = DrainPlanner.plan(problem)
        #expect(DrainPlanViolations(plan: plan, problem: problem).problems == [])
        #expect(plan.placements.count == 12)
        #expect(plan.unplaced.map(\.vm).count == 1)
    }

    @Test("memory is booked too: two 16 GiB VMs and 24 GiB free place one")
    func memory() throws {
        let (source, guests) = try Self.t4Source([("a", "GRID T4-4Q"), ("b", "GRID T4-4Q")])
        var destination = try Fleet.host("t4-b")
        destination.freeMemoryBytes = 24 << 30
        let problem = DrainProblem(
            sources: ["src": source], guests: guests, destinations: [.init(name: "dst", status: .ready(destination))],
            policy: try F.policy("adaptive"))
        let plan = DrainPlanner.plan(problem)
        #expect(plan.placements.map(\.vm) == ["a"])
        let refusal = try #require(plan.unplaced.only)
        #expect(refusal.reasons.contains { $0.contains("memory.destination") }, "\(refusal.reasons)")
    }

    @Test("cordoned, unreachable and drained hosts are left out, each with its reason")
    func skippedHosts() throws {
        let (source, guests) = try Self.t4Source([("a", "GRID T4-4Q")])
        let problem = DrainProblem(
            sources: ["src": source], guests: guests,
            destinations: [
                .init(name: "src", status: .ready(source)),
                .init(name: "gone", status: .unreachable("connection refused")),
                .init(name: "fixing", status: .cordoned("fan replacement")),
                .init(name: "ok", status: .ready(try Fleet.host("t4-b"))),
            ], policy: try F.policy("adaptive"))
        let plan = DrainPlanner.plan(problem)
        #expect(plan.placements.map(\.destination) == ["ok"])
        #expect(
            plan.skipped == [
                .init(host: "fixing", reason: "cordoned: fan replacement"),
                .init(host: "gone", reason: "unreachable: connection refused"),
                .init(host: "src", reason: "being drained"),
            ])
    }

    @Test("a destination every check refuses (older driver) is never planned, and the refusal says why")
    func driverMismatch() throws {
        let (source, guests) = try Self.t4Source([("a", "GRID T4-4Q")])
        let problem = DrainProblem(
            sources: ["src": source], guests: guests,
            destinations: [.init(name: "old", status: .ready(try Fleet.host("t4-c-older-driver")))],
            policy: try F.policy("adaptive"))
        let plan = DrainPlanner.plan(problem)
        #expect(plan.placements == [])
        let refusal = try #require(plan.unplaced.only)
        #expect(refusal.reasons.only?.contains("driver.version") == true, "\(refusal.reasons)")
    }

    @Test("random fleets: no plan books a slot twice, mixes sizes, passes max_instance or memory, or loses a VM")
    func randomFleets() throws {
        let fixtures = ["t4-b", "t4-dual", "t4-full", "t4-a", "a100-40gb", "l40s", "mtty-empty", "mtty"]
        let templates = try Dictionary(uniqueKeysWithValues: fixtures.map { ($0, try Fleet.host($0)) })
        let policy = try F.policy("adaptive")
        var placed = 0
        var refused = 0
        var gpusShared = 0
        for seed in UInt64(1)...120 {
            var random = SeededGenerator(state: seed)
            // The drained host: a T4 pair, an A100, an L40S and an mtty parent, with random VMs.
            var source = templates["t4-b"]!
            for fixture in ["t4-b", "a100-40gb", "l40s", "mtty-empty"] {
                var gpu = templates[fixture]!.gpus[0]
                if fixture == "t4-b" {
                    gpu.address = DeviceAddress("0000:af:00.0")!
                    for index in gpu.functions.indices { gpu.functions[index].address = gpu.address }
                }
                source.gpus.append(gpu)
            }
            var guests: [DrainGuest] = []
            for number in 0..<Int.random(in: 1...14, using: &random) {
                let g = Int.random(in: 0..<source.gpus.count, using: &random)
                let offered = source.gpus[g].vgpuTypes.filter { $0.free > 0 }
                guard let type = offered.randomElement(using: &random) else { continue }
                let name = "vm\(number)"
                if let domain = Fleet.addGuest(
                    name, typeID: type.type.id, gpu: g, memoryGiB: Int.random(in: 1...32, using: &random), to: &source)
                {
                    guests.append(DrainGuest(name: name, source: "src", domain: domain))
                }
            }
            var destinations: [DrainDestination] = []
            for number in 0..<Int.random(in: 1...6, using: &random) {
                var facts = templates[fixtures.randomElement(using: &random)!]!
                facts.hostUUID = "uuid-\(seed)-\(number)"
                facts.freeMemoryBytes = UInt64.random(in: 8...160, using: &random) << 30
                for _ in 0..<Int.random(in: 0...4, using: &random) {
                    let g = Int.random(in: 0..<facts.gpus.count, using: &random)
                    if let type = facts.gpus[g].vgpuTypes.filter({ $0.free > 0 }).randomElement(using: &random) {
                        _ = facts.gpus[g].book(typeID: type.type.id, vgpuID: UUID().uuidString.lowercased())
                    }
                }
                let status: DrainDestination.Status =
                    Int.random(in: 0..<10, using: &random) == 0 ? .cordoned("maintenance") : .ready(facts)
                destinations.append(.init(name: "d\(number)", status: status))
            }
            let problem = DrainProblem(
                sources: ["src": source], guests: guests, destinations: destinations, policy: policy)
            let plan = DrainPlanner.plan(problem)
            let violations = DrainPlanViolations(plan: plan, problem: problem).problems
            #expect(violations == [], "seed \(seed)")
            for refusal in plan.unplaced {
                #expect(!refusal.reasons.isEmpty, "seed \(seed): \(refusal.vm) refused without a reason")
            }
            placed += plan.placements.count
            refused += plan.unplaced.count
            let gpus = plan.placements.flatMap { p in p.vgpus.map { "\(p.destination) \($0.gpu)" } }
            gpusShared += gpus.count - Set(gpus).count
        }
        // The fleets exercise the rules: many moves, some refused, GPUs taking several vGPUs.
        #expect(
            placed > 150 && refused > 20 && gpusShared > 30,
            "placed \(placed), refused \(refused), shared \(gpusShared)")
    }

    @Test("the expected drain time honours --parallel and the per-host limits")
    func expectedTime() {
        func move(_ vm: String, _ from: String, _ to: String, _ seconds: Double) -> DrainPlan.Placement {
            var estimate = MigrationEstimate(
                memoryMiB: 1024, framebufferMiB: 0, untrackedFramebufferMiB: 0, bandwidthMiBPerSecond: 1024,
                dirtyRateMiBPerSecond: 0, downtimeLimitMilliseconds: 300)
            estimate.totalSeconds = seconds
            return .init(vm: vm, source: from, destination: to, vgpus: [], estimate: estimate, warnings: [])
        }
        let plan = DrainPlan(
            policy: "adaptive",
            placements: [
                move("a", "s", "x", 10), move("b", "s", "x", 8), move("c", "s", "y", 6), move("d", "s", "y", 4),
            ],
            unplaced: [], skipped: [])
        // One at a time: the sum.
        #expect(DrainSchedule.expectedSeconds(plan, limits: DrainLimits(parallel: 1)) == 28)
        // Two at once out of s: a+b (0–10, 0–8), c at 8 (–14), d at 10 (–14).
        #expect(DrainSchedule.expectedSeconds(plan, limits: DrainLimits(parallel: 2)) == 14)
        // Four at once, but one into each host at a time: a, c; then d at 6; b at 10.
        #expect(
            DrainSchedule.expectedSeconds(plan, limits: DrainLimits(parallel: 4, defaultOutbound: 4, defaultInbound: 1))
                == 18)
    }
}
