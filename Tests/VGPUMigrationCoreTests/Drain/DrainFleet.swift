import Foundation
import VGPUTestSupport

@testable import VGPUMigrationCore

/// Fleets for the drain planner's tests and benchmark, built from the fixture hosts (real sysfs
/// layouts), with vGPUs created on them as the host's facts would show them.
enum DrainFleet {
    typealias F = CheckFixtures

    /// A fixture host's facts with every existing vGPU kept, named and with its own UUID.
    static func host(_ fixture: String, uuid: String = UUID().uuidString.lowercased()) throws -> HostInventory {
        var facts = try F.host(fixture, uuid: uuid)
        if fixture.hasPrefix("mtty") {
            facts.hypervisorVersion = "10.0.13"
            facts.libvirtVersion = "11.3.0"
        }
        return facts
    }

    /// Adds a vGPU of `typeID` on GPU `gpu` of `facts`, as creating it on the host would show,
    /// and returns the VM XML that uses it; nil when the GPU has no room.
    static func addGuest(
        _ name: String, typeID: String, gpu: Int, memoryGiB: Int = 16, to facts: inout HostInventory
    ) -> GuestDomain? {
        let uuid = UUID().uuidString.lowercased()
        guard let function = facts.gpus[gpu].book(typeID: typeID, vgpuID: uuid) else { return nil }
        let source: String
        if facts.gpus[gpu].interface == .vendorVFIO, let address = function.pciAddress {
            // A vendor-specific vGPU is its VF.
            facts.gpus[gpu].vgpus[facts.gpus[gpu].vgpus.count - 1].id = address.description
            source = """
                <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x\(hex(address.domain, 4))' \
                bus='0x\(hex(address.bus, 2))' slot='0x\(hex(address.slot, 2))' function='0x\(address.function)'/></source></hostdev>
                """
        } else {
            source = """
                <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-pci'><source><address uuid='\(uuid)'/></source></hostdev>
                """
        }
        let xml = """
            <domain type='kvm'><name>\(name)</name><memory unit='GiB'>\(memoryGiB)</memory><vcpu>2</vcpu>
            <os><type arch='x86_64' machine='q35'>hvm</type></os><devices>\(source)</devices></domain>
            """
        return try? GuestDomain.parse(xml: xml)
    }

    static func hex(_ value: some BinaryInteger, _ width: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - text.count)) + text
    }

    /// The id of the type named `name` on GPU `gpu`.
    static func typeID(_ name: String, gpu: Int, of facts: HostInventory) -> String? {
        facts.gpus[gpu].vgpuTypes.first { $0.type.name == name }?.type.id
    }
}

/// Checks a plan against the fleet it was made for, by the hardware's rules written out here
/// on their own (not with the planner's booking): no VM placed twice or lost, no slot booked
/// twice, no VF carrying two vGPUs, no type over what the function offered, homogeneous
/// framebuffer sizes on each time-sliced NVIDIA GPU, `max_instance` kept, memory kept.
struct DrainPlanViolations {
    var problems: [String] = []

    init(plan: DrainPlan, problem: DrainProblem) {
        let names = problem.guests.map(\.name)
        let placed = plan.placements.map(\.vm)
        let refused = plan.unplaced.map(\.vm)
        if Set(placed).count != placed.count { problems.append("a VM is placed twice: \(placed)") }
        if Set(placed + refused) != Set(names) || placed.count + refused.count != names.count {
            problems.append("placed \(placed) + refused \(refused) is not every VM \(names)")
        }
        var destinations: [String: HostInventory] = [:]
        for destination in problem.destinations {
            if case .ready(let facts) = destination.status { destinations[destination.name] = facts }
        }
        for (name, facts) in destinations {
            let here = plan.placements.filter { $0.destination == name }
            if problem.sources[name] != nil && !here.isEmpty { problems.append("\(name) is drained but takes VMs") }
            let memory = here.compactMap { placement in
                problem.guests.first { $0.name == placement.vm }?.domain.memoryBytes
            }.reduce(0, +)
            if let free = facts.freeMemoryBytes, memory > free {
                problems.append("\(name): \(memory) bytes planned, \(free) free")
            }
            for gpu in facts.gpus {
                let planned = here.flatMap(\.vgpus).filter { $0.gpu == gpu.address }
                for vgpu in planned {
                    guard let capacity = gpu.capacity(ofType: vgpu.type), capacity.free > 0 else {
                        problems.append("\(name) \(gpu.address): \(vgpu.type) had no room before the plan")
                        continue
                    }
                    guard let function = gpu.functions.first(where: { $0.address == vgpu.function }) else {
                        problems.append("\(name) \(gpu.address): no function \(vgpu.function)")
                        continue
                    }
                    let offered = function.offers.first { $0.typeID == vgpu.type }?.availableInstances ?? 0
                    let onFunction = planned.filter { $0.function == vgpu.function }
                    if gpu.sriov {
                        if onFunction.count > 1 || gpu.vgpus.contains(where: { $0.function == vgpu.function })
                            || function.currentVGPUTypeID != nil || offered < 1
                        {
                            problems.append("\(name) VF \(vgpu.function) booked though taken or twice")
                        }
                    } else if onFunction.filter({ $0.type == vgpu.type }).count > offered {
                        problems.append("\(name) \(vgpu.function): more \(vgpu.type) than the \(offered) available")
                    }
                }
                guard gpu.isNVIDIA else { continue }
                let sizes =
                    gpu.vgpus.map(\.typeID) + planned.map(\.type)
                let timeSliced = sizes.compactMap { id -> UInt64? in
                    guard let type = gpu.capacity(ofType: id)?.type, type.profile?.isTimeSliced ?? true else {
                        return nil
                    }
                    return type.framebufferMiB
                }
                if Set(timeSliced).count > 1 {
                    problems.append("\(name) \(gpu.address): framebuffer sizes \(Set(timeSliced).sorted()) mixed")
                }
                for id in Set(sizes) {
                    guard let capacity = gpu.capacity(ofType: id), let most = capacity.maxInstances else { continue }
                    let sameSize = timeSliced.filter { $0 == capacity.type.framebufferMiB }.count
                    if sameSize > most {
                        problems.append("\(name) \(gpu.address): \(sameSize) of size, at most \(most)")
                    }
                }
            }
        }
        for placement in plan.placements where destinations[placement.destination] == nil {
            problems.append("\(placement.vm) goes to \(placement.destination), not a usable destination")
        }
    }
}

/// A seeded generator (SplitMix64), so a failing fleet can be built again from its seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
