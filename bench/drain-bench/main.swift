// Benchmark: the drain planner over a fleet of HOSTS hosts (default 1,000) carrying VMS vGPU VMs
// (default 10,000). Two fifths of the hosts are drained at once (a rolling driver update of a
// rack row); every VM on them is planned onto the other hosts. Every host has eight T4 GPUs
// (the `t4-b` fixture's, real sysfs layout) with vGPUs of four sizes already placed at random.
// Prints, from one run, the median, fastest and slowest of REPEATS plans next to the 1 s target,
// and what the plan placed.
import Foundation
import VGPUHost
import VGPUMigrationCore
import VGPUPolicies

let arguments = CommandLine.arguments
let hostCount = arguments.count > 1 ? Int(arguments[1]) ?? 1000 : 1000
let vmCount = arguments.count > 2 ? Int(arguments[2]) ?? 10_000 : 10_000
let repeats = arguments.count > 3 ? Int(arguments[3]) ?? 7 : 7

let catalogPath = "policies/\(GPUBoardCatalogFile.fileName)"
let catalog = try GPUBoardCatalogFile.parse(try TextFile.read(catalogPath), file: catalogPath)
let policyPath = "policies/adaptive.yaml"
let policy = try MigrationPolicyFile.parse(try TextFile.read(policyPath), name: "adaptive", file: policyPath)
var template = try SysfsHostProbe(sysfs: DirectorySysfs(root: "Fixtures/hosts/t4-b"), catalog: catalog).inventory()
template.libvirtVersion = "9.0.0"
template.hypervisorVersion = "8.2.0"
let gpu = template.gpus[0]
template.gpus = (0..<8).map { number in
    var copy = gpu
    copy.address = DeviceAddress(String(format: "0000:%02x:00.0", 0x3b + number))!
    for index in copy.functions.indices { copy.functions[index].address = copy.address }
    return copy
}
let sizes = ["GRID T4-2Q", "GRID T4-4Q", "GRID T4-8Q", "GRID T4-16Q"].map { name in
    gpu.vgpuTypes.first { $0.type.name == name }!.type.id
}

let drainedCount = hostCount * 2 / 5
var sources: [String: HostInventory] = [:]
var destinations: [DrainDestination] = []
var guests: [DrainGuest] = []

/// Creates a vGPU of a random size on a random GPU with room (any GPU with room when a few
/// random picks find none); its id when one was made.
func addVGPU(to facts: inout HostInventory, sizes: [String]) -> String? {
    var random = SystemRandomNumberGenerator()
    let id = UUID().uuidString.lowercased()
    for _ in 0..<16 {
        let g = Int.random(in: 0..<facts.gpus.count, using: &random)
        if facts.gpus[g].book(typeID: sizes.randomElement(using: &random)!, vgpuID: id) != nil { return id }
    }
    for g in facts.gpus.indices {
        for type in sizes where facts.gpus[g].book(typeID: type, vgpuID: id) != nil { return id }
    }
    return nil
}

print("building \(hostCount) hosts and \(vmCount) VMs…")
for number in 0..<hostCount {
    var facts = template
    let name = String(format: "host-%04d", number)
    facts.hostUUID = UUID().uuidString.lowercased()
    facts.freeMemoryBytes = 512 << 30
    if number < drainedCount {
        // VMs are spread over the drained hosts (what one cannot hold goes to the next); each has
        // one vGPU of the T4 sizes but 16Q.
        let share = (vmCount - guests.count + (drainedCount - number) - 1) / (drainedCount - number)
        for vm in 0..<share {
            guard let id = addVGPU(to: &facts, sizes: Array(sizes.prefix(3))) else { break }
            let xml = """
                <domain type='kvm'><name>\(name)-vm\(vm)</name><memory unit='GiB'>8</memory><vcpu>2</vcpu>\
                <os><type arch='x86_64' machine='q35'>hvm</type></os><devices><hostdev mode='subsystem' \
                type='mdev' model='vfio-pci'><source><address uuid='\(id)'/></source></hostdev></devices></domain>
                """
            guests.append(DrainGuest(name: "\(name)-vm\(vm)", source: name, domain: try GuestDomain.parse(xml: xml)))
        }
        sources[name] = facts
    } else {
        for _ in 0..<Int.random(in: 0...8) { _ = addVGPU(to: &facts, sizes: sizes) }
        destinations.append(DrainDestination(name: name, status: .ready(facts)))
    }
}
let problem = DrainProblem(
    sources: sources, guests: guests, destinations: destinations, policy: policy, bandwidth: { _, _ in 1250 })

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

// The peer: the pre-flight check run once for each VM against one destination, which is what
// placing them one at a time costs at the least.
var checkTimes: [Double] = []
for _ in 0..<repeats {
    let start = ContinuousClock.now
    for (number, guest) in guests.enumerated() {
        guard case .ready(let facts) = destinations[number % destinations.count].status else { continue }
        let subject = CheckSubject(
            vmName: guest.name, vmState: .running, domain: guest.domain, sourceName: guest.source,
            source: sources[guest.source]!, destinationName: destinations[number % destinations.count].name,
            destination: facts, bandwidthMiBPerSecond: 1250)
        _ = CompatibilityRules.evaluate(subject, policy: policy)
    }
    checkTimes.append(seconds(ContinuousClock.now - start))
}
checkTimes.sort()

var times: [Double] = []
var plan: DrainPlan?
for _ in 0..<repeats {
    let start = ContinuousClock.now
    plan = DrainPlanner.plan(problem)
    times.append(seconds(ContinuousClock.now - start))
}
times.sort()
let median = times[times.count / 2]
let result = plan!
let destinationsUsed = Set(result.placements.map(\.destination)).count
print(
    """
    fleet: \(hostCount) hosts (\(drainedCount) drained, \(destinations.count) destinations, 8 T4 GPUs each), \
    \(guests.count) VMs to place
    plan: \(result.placements.count) placed on \(destinationsUsed) hosts, \(result.unplaced.count) without room
    planner, \(repeats) runs: median \(String(format: "%.3f", median)) s, fastest \(String(format: "%.3f", times.first!)) s, \
    slowest \(String(format: "%.3f", times.last!)) s
    one check per VM (\(guests.count) checks), \(repeats) runs: median \(String(format: "%.3f", checkTimes[checkTimes.count / 2])) s, \
    fastest \(String(format: "%.3f", checkTimes.first!)) s, slowest \(String(format: "%.3f", checkTimes.last!)) s
    planner / one check per VM: \(String(format: "%.2f", median / checkTimes[checkTimes.count / 2]))
    planner / 1 s target: \(String(format: "%.2f", median)) (\(median < 1 ? "met" : "NOT met"))
    """)
