import Dispatch
import Synchronization

/// A VM to move off a host being drained.
package struct DrainGuest: Sendable, Hashable {
    package var name: String
    /// The host it runs on (inventory name).
    package var source: String
    package var domain: GuestDomain
    /// Measured dirty rate, when known (MiB/s); else the policy's assumption.
    package var dirtyRateMiBPerSecond: Double?

    package init(name: String, source: String, domain: GuestDomain, dirtyRateMiBPerSecond: Double? = nil) {
        self.name = name
        self.source = source
        self.domain = domain
        self.dirtyRateMiBPerSecond = dirtyRateMiBPerSecond
    }
}

/// A host a drain may move VMs to, as the coordinator found it.
package struct DrainDestination: Sendable {
    package enum Status: Sendable {
        case ready(HostInventory)
        case unreachable(String)
        case cordoned(String)
    }

    package var name: String
    package var status: Status

    package init(name: String, status: Status) {
        self.name = name
        self.status = status
    }
}

/// Everything a drain plan is decided from.
package struct DrainProblem: Sendable {
    /// Facts of the hosts being drained, by name.
    package var sources: [String: HostInventory]
    package var guests: [DrainGuest]
    package var destinations: [DrainDestination]
    package var policy: CheckPolicy
    /// Link bandwidth from a source to a destination (MiB/s), when the inventory gives one.
    package var bandwidth: @Sendable (_ source: String, _ destination: String) -> Double?
    /// libvirt's CPU comparison of a guest on a destination.
    package var cpuComparison: @Sendable (_ guest: DrainGuest, _ destination: String) -> CheckSubject.CPUComparison

    package init(
        sources: [String: HostInventory], guests: [DrainGuest], destinations: [DrainDestination], policy: CheckPolicy,
        bandwidth: @escaping @Sendable (String, String) -> Double? = { _, _ in nil },
        cpuComparison: @escaping @Sendable (DrainGuest, String) -> CheckSubject.CPUComparison = { _, _ in
            .notChecked("not asked")
        }
    ) {
        self.sources = sources
        self.guests = guests
        self.destinations = destinations
        self.policy = policy
        self.bandwidth = bandwidth
        self.cpuComparison = cpuComparison
    }
}

/// Decides where every VM of a drain goes, for all of them together.
///
/// Every move passes every rule of `check` against the destination as it will be once the moves
/// planned before it have landed: capacity is booked across the plan (per GPU and VF, with
/// `max_instance` and framebuffer-size homogeneity worked out again after each booking, see
/// ``PhysicalGPU/book(typeID:vgpuID:)``), and so is the destination's memory. So two VMs never
/// aim at one free slot, and a VM never takes an empty GPU that another size needed while a GPU
/// of its own size had room.
///
/// The VMs that have fewest possible destinations and the largest vGPUs are placed first. A
/// destination is chosen by the check's estimated downtime, then by packing (GPUs that already
/// carry the size), then by the fewest moves planned into it (so a drain runs in parallel), then
/// by name; on it, each vGPU takes the fullest GPU that already carries its size. When VMs are
/// left over, a second order (largest vGPUs first) is tried and the better plan kept.
///
/// The rules that do not change as the plan books (types offered, boards, versions, CPU,
/// dirty tracking, the estimate) are evaluated once per kind of VM and kind of host, so a plan
/// over a large fleet takes little time; the full check runs once for each chosen move.
package enum DrainPlanner {
    package static func plan(_ problem: DrainProblem) -> DrainPlan {
        var skipped: [DrainPlan.SkippedHost] = []
        var ready: [(name: String, facts: HostInventory)] = []
        let sourceNames = Set(problem.sources.keys)
        for destination in problem.destinations.sorted(by: { $0.name < $1.name }) {
            if sourceNames.contains(destination.name) {
                skipped.append(.init(host: destination.name, reason: "being drained"))
                continue
            }
            switch destination.status {
            case .ready(let facts): ready.append((destination.name, facts))
            case .unreachable(let reason):
                skipped.append(.init(host: destination.name, reason: "unreachable: \(reason)"))
            case .cordoned(let reason): skipped.append(.init(host: destination.name, reason: "cordoned: \(reason)"))
            }
        }
        let model = PlanningModel(problem: problem, ready: ready)
        // Each move's full check runs after the plan is made (on all cores); a move it refuses
        // is taken out of that guest's choices and the plan is made again.
        var excluded: [Int: Set<Int>] = [:]
        var outcome = model.bestRun(excluded: excluded)
        var reports = model.verify(outcome.bookings)
        for _ in 0..<2 where reports.contains(where: { !$0.compatible }) {
            for (booking, report) in zip(outcome.bookings, reports) where !report.compatible {
                excluded[booking.guest, default: []].insert(booking.destination)
            }
            outcome = model.bestRun(excluded: excluded)
            reports = model.verify(outcome.bookings)
        }
        var placements: [DrainPlan.Placement] = []
        var refused = outcome.refused
        for (booking, report) in zip(outcome.bookings, reports) {
            // Still refused after the plan was made again: the guest is not moved (which only
            // frees room for the others).
            guard report.compatible else {
                refused.append(booking.guest)
                continue
            }
            placements.append(model.placement(booking, report: report))
        }
        placements.sort { a, b in
            let ta = a.estimate?.totalSeconds ?? 0
            let tb = b.estimate?.totalSeconds ?? 0
            return ta != tb ? ta > tb : a.vm < b.vm
        }
        return DrainPlan(
            policy: problem.policy.name, placements: placements,
            unplaced: model.refusals(refused, state: outcome.state), skipped: skipped)
    }
}

/// The planner's working view: hosts and VMs as numbers, the rules that do not change with
/// bookings evaluated once per kind.
private struct PlanningModel: Sendable {
    /// What a vGPU needs of a destination GPU: the same interface, kind (NVIDIA or not), board
    /// and type.
    struct NeedKey: Hashable {
        var interface: VGPUInterface
        var nvidia: Bool
        var board: String?
        var typeID: String
    }

    struct Guest: Sendable {
        var guest: DrainGuest
        var vgpus: [GuestVGPU]
        /// Need index → how many.
        var needs: [(key: Int, count: Int)]
        /// The need of each of `vgpus`; nil for a vGPU the source does not show.
        var vgpuNeeds: [Int?]
        var framebufferMiB: UInt64
        var kind: Int
    }

    struct Candidate: Sendable {
        var destination: Int
        var downtime: Double
    }

    /// A guest booked on a destination, with the destination as it was just before.
    struct Booking: Sendable {
        var guest: Int
        var destination: Int
        var vgpus: [DrainPlan.VGPUPlacement]
        var before: HostInventory
        var downtime: Double
    }

    struct State {
        var facts: [HostInventory]
        /// Free slots per destination and need: `free[d * needCount + k]`; `opened` counts only
        /// GPUs that already carry a vGPU.
        var free: [Int32]
        var opened: [Int32]
        var inbound: [Int]
        /// Memory a new guest can have per destination (nil: unknown), as booked so far.
        var freeMemory: [UInt64?]
        /// Destinations whose full check refused a guest (guest index → destinations).
        var refusedBy: [Int: Set<Int>] = [:]
    }

    struct Outcome {
        var bookings: [Booking]
        var refused: [Int]
        var downtime: Double
        var state: State
    }

    let problem: DrainProblem
    let names: [String]
    let initialFacts: [HostInventory]
    var needKeys: [NeedKey] = []
    var needIndex: [NeedKey: Int] = [:]
    var guests: [Guest] = []
    /// The need each capacity entry of each GPU of each destination serves:
    /// `needOf[d][g][t]` for `initialFacts[d].gpus[g].vgpuTypes[t]` (bookings keep that order).
    var needOf: [[[Int]]] = []
    /// Compatible destinations per kind of guest, best estimated downtime first.
    var candidates: [[Candidate]] = []

    init(problem: DrainProblem, ready: [(name: String, facts: HostInventory)]) {
        self.problem = problem
        names = ready.map(\.name)
        initialFacts = ready.map(\.facts)
        for facts in initialFacts {
            var gpus: [[Int]] = []
            for gpu in facts.gpus {
                gpus.append(gpu.vgpuTypes.map { intern(Self.needKey(gpu: gpu, typeID: $0.type.id)) })
            }
            needOf.append(gpus)
        }
        var kinds: [String: Int] = [:]
        var representatives: [Int] = []
        for guest in problem.guests {
            let source = problem.sources[guest.source]
            let vgpus = source.map { guest.domain.vgpus(on: $0) } ?? []
            var counts: [Int: Int] = [:]
            var framebuffer: UInt64 = 0
            var signature: [String] = []
            var vgpuNeeds: [Int?] = []
            for vgpu in vgpus {
                guard let host = vgpu.hostVGPU, let source else {
                    vgpuNeeds.append(nil)
                    continue
                }
                let gpu = vgpu.gpuAddress.flatMap { source.gpu(containing: $0) }
                let nvidia = gpu?.isNVIDIA ?? false
                let key = NeedKey(
                    interface: host.interface, nvidia: nvidia, board: nvidia ? gpu?.board?.name : nil,
                    typeID: host.typeID)
                let need = intern(key)
                vgpuNeeds.append(need)
                counts[need, default: 0] += 1
                framebuffer += vgpu.type?.framebufferMiB ?? 0
                signature.append("\(key.interface.rawValue)/\(key.nvidia)/\(key.board ?? "")/\(key.typeID)")
            }
            let domain = guest.domain
            let kindKey = [
                guest.source, String(domain.memoryBytes), domain.cpuMode ?? "", domain.cpuXML ?? "",
                domain.architecture ?? "", domain.hypervisorType, guest.dirtyRateMiBPerSecond.map { "\($0)" } ?? "",
                String(domain.hostdevs.count), String(vgpus.count), signature.sorted().joined(separator: ","),
            ].joined(separator: "\u{1}")
            let kind: Int
            if let known = kinds[kindKey] {
                kind = known
            } else {
                kind = representatives.count
                kinds[kindKey] = kind
                representatives.append(guests.count)
            }
            guests.append(
                Guest(
                    guest: guest, vgpus: vgpus, needs: counts.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                    vgpuNeeds: vgpuNeeds, framebufferMiB: framebuffer, kind: kind))
        }
        var profileIDs: [String: Int] = [:]
        let profiles = initialFacts.map { facts in
            let profile = Self.profile(facts)
            if let known = profileIDs[profile] { return known }
            profileIDs[profile] = profileIDs.count
            return profileIDs.count - 1
        }
        candidates = representatives.map {
            staticCandidates(for: guests[$0], profiles: profiles, profileCount: profileIDs.count)
        }
    }

    mutating func intern(_ key: NeedKey) -> Int {
        if let index = needIndex[key] { return index }
        needIndex[key] = needKeys.count
        needKeys.append(key)
        return needKeys.count - 1
    }

    static func needKey(gpu: PhysicalGPU, typeID: String) -> NeedKey {
        let nvidia = gpu.isNVIDIA
        return NeedKey(interface: gpu.interface, nvidia: nvidia, board: nvidia ? gpu.board?.name : nil, typeID: typeID)
    }

    /// What the rules that do not change with bookings read of a host.
    static func profile(_ facts: HostInventory) -> String {
        var parts = [
            facts.kernelRelease ?? "", facts.nvidiaDriverVersion ?? "", facts.libvirtVersion ?? "",
            facts.hypervisorVersion ?? "", facts.cpuModel ?? "", facts.cpuArchitecture ?? "",
            facts.freeMemoryBytes == nil ? "memory unknown" : "memory known",
        ]
        for gpu in facts.gpus {
            parts.append(
                "\(gpu.interface.rawValue)/\(gpu.isNVIDIA)/\(gpu.board?.name ?? "")/"
                    + gpu.vgpuTypes.map(\.type.id).joined(separator: ","))
        }
        return parts.joined(separator: "\u{1}")
    }

    /// Checks whose outcome depends on what the plan has booked: the planner books them itself.
    static let bookedChecks: Set<String> = ["vgpu.capacity", "memory.destination"]

    func subject(_ guest: Guest, destination: Int, facts: HostInventory) -> CheckSubject {
        let name = names[destination]
        return CheckSubject(
            vmName: guest.guest.name, vmState: .running, domain: guest.guest.domain, sourceName: guest.guest.source,
            source: problem.sources[guest.guest.source]
                ?? HostInventory(
                    source: .init(kind: .sysfs, location: ""), gpus: []),
            destinationName: name, destination: facts,
            bandwidthMiBPerSecond: problem.bandwidth(guest.guest.source, name),
            dirtyRateMiBPerSecond: guest.guest.dirtyRateMiBPerSecond,
            cpuComparison: problem.cpuComparison(guest.guest, name))
    }

    /// The destinations whose unchanging rules accept this kind of guest, best downtime first.
    func staticCandidates(for guest: Guest, profiles: [Int], profileCount: Int) -> [Candidate] {
        // Verdicts by destination profile, then by the pair's bandwidth and CPU comparison
        // (nearly always one entry a profile: a short list compared in place beats hashing).
        var verdicts: [[(bandwidth: Double?, cpu: CheckSubject.CPUComparison, downtime: Double?)]] = Array(
            repeating: [], count: profileCount)
        var result: [Candidate] = []
        let sourceName = guest.guest.source
        let sourceUUID = problem.sources[sourceName]?.hostUUID
        for destination in names.indices {
            if let uuid = initialFacts[destination].hostUUID, uuid == sourceUUID { continue }
            let profile = profiles[destination]
            let bandwidth = problem.bandwidth(sourceName, names[destination])
            let cpu = problem.cpuComparison(guest.guest, names[destination])
            let verdict: Double?
            if let known = verdicts[profile].first(where: { $0.bandwidth == bandwidth && $0.cpu == cpu }) {
                verdict = known.downtime
            } else {
                let report = CompatibilityRules.evaluate(
                    subject(guest, destination: destination, facts: initialFacts[destination]), policy: problem.policy)
                let fails = report.findings.contains { $0.severity == .fail && !Self.bookedChecks.contains($0.check) }
                verdict = fails ? nil : (report.estimate?.downtimeMilliseconds ?? 0)
                verdicts[profile].append((bandwidth, cpu, verdict))
            }
            if let downtime = verdict { result.append(Candidate(destination: destination, downtime: downtime)) }
        }
        return result.sorted {
            $0.downtime != $1.downtime ? $0.downtime < $1.downtime : $0.destination < $1.destination
        }
    }

    // MARK: Orders

    func constrainedFirst() -> [Int] {
        guests.indices.sorted { a, b in
            let ga = guests[a]
            let gb = guests[b]
            if ga.vgpus.isEmpty != gb.vgpus.isEmpty { return !ga.vgpus.isEmpty }
            let ca = candidates[ga.kind].count
            let cb = candidates[gb.kind].count
            if ca != cb { return ca < cb }
            if ga.framebufferMiB != gb.framebufferMiB { return ga.framebufferMiB > gb.framebufferMiB }
            if ga.guest.domain.memoryBytes != gb.guest.domain.memoryBytes {
                return ga.guest.domain.memoryBytes > gb.guest.domain.memoryBytes
            }
            return ga.guest.name < gb.guest.name
        }
    }

    func largestFirst() -> [Int] {
        guests.indices.sorted { a, b in
            let ga = guests[a]
            let gb = guests[b]
            if ga.framebufferMiB != gb.framebufferMiB { return ga.framebufferMiB > gb.framebufferMiB }
            let ta = ga.needs.map(\.key)
            let tb = gb.needs.map(\.key)
            if ta != tb { return ta.lexicographicallyPrecedes(tb) }
            return ga.guest.name < gb.guest.name
        }
    }

    // MARK: Booking

    func freshState() -> State {
        var state = State(
            facts: initialFacts, free: Array(repeating: 0, count: names.count * needKeys.count),
            opened: Array(repeating: 0, count: names.count * needKeys.count),
            inbound: Array(repeating: 0, count: names.count),
            freeMemory: initialFacts.map(\.freeMemoryBytes))
        for destination in names.indices { refreshSlots(destination, in: &state) }
        return state
    }

    func refreshSlots(_ destination: Int, in state: inout State) {
        let base = destination * needKeys.count
        for k in 0..<needKeys.count {
            state.free[base + k] = 0
            state.opened[base + k] = 0
        }
        for (g, gpu) in state.facts[destination].gpus.enumerated() {
            for (t, capacity) in gpu.vgpuTypes.enumerated() where capacity.free > 0 {
                let k = needOf[destination][g][t]
                state.free[base + k] += Int32(capacity.free)
                if !gpu.vgpus.isEmpty { state.opened[base + k] += Int32(capacity.free) }
            }
        }
    }

    /// The plan by the first order; when it leaves guests over (and the drain is not huge), the
    /// plan by the second order too, and the one that places more (then with less downtime).
    func bestRun(excluded: [Int: Set<Int>]) -> Outcome {
        var best = run(order: constrainedFirst(), excluded: excluded)
        if !best.refused.isEmpty && guests.count <= 500 {
            let other = run(order: largestFirst(), excluded: excluded)
            if other.bookings.count > best.bookings.count
                || (other.bookings.count == best.bookings.count && other.downtime < best.downtime)
            {
                best = other
            }
        }
        return best
    }

    func run(order: [Int], excluded: [Int: Set<Int>]) -> Outcome {
        var state = freshState()
        state.refusedBy = excluded
        var bookings: [Booking] = []
        var refused: [Int] = []
        var downtime = 0.0
        for index in order {
            if let booking = place(index, in: &state) {
                downtime += booking.downtime
                bookings.append(booking)
            } else {
                refused.append(index)
            }
        }
        return Outcome(bookings: bookings, refused: refused, downtime: downtime, state: state)
    }

    /// Places guest `index` on its best destination that still has room, booking it there.
    func place(_ index: Int, in state: inout State) -> Booking? {
        let guest = guests[index]
        let memory = guest.guest.domain.memoryBytes
        let stride = needKeys.count
        let excluded = state.refusedBy[index] ?? []
        var best: (candidate: Candidate, packing: Int32)?
        for candidate in candidates[guest.kind] {
            if let current = best, candidate.downtime > current.candidate.downtime { break }
            let d = candidate.destination
            if let free = state.freeMemory[d], free < memory { continue }
            var fits = true
            var packing: Int32 = 0
            for need in guest.needs {
                let free = state.free[d * stride + need.key]
                if free < Int32(need.count) {
                    fits = false
                    break
                }
                packing += min(Int32(need.count), state.opened[d * stride + need.key])
            }
            guard fits, !excluded.contains(d) else { continue }
            if let current = best {
                let better =
                    packing != current.packing
                    ? packing > current.packing
                    : state.inbound[d] < state.inbound[current.candidate.destination]
                if !better { continue }
            }
            best = (candidate, packing)
        }
        guard let chosen = best?.candidate else { return nil }
        return book(guest, index: index, on: chosen, in: &state)
    }

    /// Books the guest's vGPUs and memory on the candidate destination.
    func book(_ guest: Guest, index: Int, on candidate: Candidate, in state: inout State) -> Booking? {
        let destination = candidate.destination
        let before = state.facts[destination]
        var facts = before
        var booked: [DrainPlan.VGPUPlacement] = []
        for (number, vgpu) in guest.vgpus.enumerated() {
            guard let host = vgpu.hostVGPU, let need = guest.vgpuNeeds[number] else { return nil }
            let gpus = facts.gpus.indices.filter { g in
                facts.gpus[g].vgpuTypes.indices.contains { t in
                    needOf[destination][g][t] == need && facts.gpus[g].vgpuTypes[t].free > 0
                }
            }
            // The fullest GPU that already carries vGPUs first: empty GPUs stay free for other sizes.
            guard
                let g = gpus.min(by: { a, b in
                    let ea = facts.gpus[a].vgpus.isEmpty
                    let eb = facts.gpus[b].vgpus.isEmpty
                    if ea != eb { return !ea }
                    let fa = facts.gpus[a].capacity(ofType: host.typeID)?.free ?? 0
                    let fb = facts.gpus[b].capacity(ofType: host.typeID)?.free ?? 0
                    return fa != fb ? fa < fb : facts.gpus[a].address < facts.gpus[b].address
                }),
                let function = facts.gpus[g].book(typeID: host.typeID, vgpuID: "planned:\(guest.guest.name)#\(number)")
            else { return nil }
            booked.append(
                .init(
                    source: vgpu.source.description, type: host.typeID,
                    typeName: vgpu.type?.name ?? host.typeName, gpu: facts.gpus[g].address, function: function))
        }
        if let free = facts.freeMemoryBytes { facts.freeMemoryBytes = free - min(free, guest.guest.domain.memoryBytes) }
        state.facts[destination] = facts
        state.freeMemory[destination] = facts.freeMemoryBytes
        state.inbound[destination] += 1
        refreshSlots(destination, in: &state)
        return Booking(
            guest: index, destination: destination, vgpus: booked, before: before, downtime: candidate.downtime)
    }

    /// Every rule of `check` for each booking, against its destination as the plan had left it
    /// just before; the bookings are checked side by side on all cores.
    func verify(_ bookings: [Booking]) -> [CompatibilityReport] {
        let results = Mutex<[CompatibilityReport?]>(Array(repeating: nil, count: bookings.count))
        DispatchQueue.concurrentPerform(iterations: bookings.count) { position in
            let booking = bookings[position]
            let report = CompatibilityRules.evaluate(
                subject(guests[booking.guest], destination: booking.destination, facts: booking.before),
                policy: problem.policy)
            results.withLock { $0[position] = report }
        }
        return results.withLock { $0.map { $0! } }
    }

    func placement(_ booking: Booking, report: CompatibilityReport) -> DrainPlan.Placement {
        let guest = guests[booking.guest].guest
        return DrainPlan.Placement(
            vm: guest.name, source: guest.source, destination: names[booking.destination], vgpus: booking.vgpus,
            estimate: report.estimate,
            warnings: report.findings.filter { $0.severity == .warn }.map { "\($0.check): \($0.message)" })
    }

    // MARK: Refusals

    /// Why each left-over guest has no destination: the full check against every destination as
    /// the plan leaves it, one line per host (the first eight), then the rest counted by check.
    func refusals(_ refused: [Int], state: State) -> [DrainPlan.Refusal] {
        refused.map { index in
            let guest = guests[index]
            var reasons: [String] = []
            var others: [String: Int] = [:]
            for destination in names.indices {
                let report = CompatibilityRules.evaluate(
                    subject(guest, destination: destination, facts: state.facts[destination]), policy: problem.policy)
                let fail = report.findings.first { $0.severity == .fail }
                let reason =
                    fail.map { "\($0.check): \($0.message)" }
                    ?? "every check passes, but the VMs planned before it leave no room of its kind"
                if reasons.count < 8 {
                    reasons.append("\(names[destination]): \(reason)")
                } else {
                    others[fail?.check ?? "capacity", default: 0] += 1
                }
            }
            if names.isEmpty { reasons.append("no destination host can be used") }
            for (check, count) in others.sorted(by: { $0.key < $1.key }) {
                reasons.append("\(count) more host\(count == 1 ? "" : "s"): \(check)")
            }
            return DrainPlan.Refusal(vm: guest.guest.name, source: guest.guest.source, reasons: reasons)
        }.sorted { $0.vm < $1.vm }
    }
}
