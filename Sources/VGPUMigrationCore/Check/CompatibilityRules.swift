/// What the pre-flight check looks at: the VM and the facts of both hosts.
package struct CheckSubject: Sendable {
    /// How the VM was found.
    package enum VMState: Sendable, Hashable {
        case running
        case notRunning
        /// Checked from a domain XML the operator gave.
        case xmlGiven
        case notFound
    }

    /// Result of libvirt's CPU comparison on the destination.
    package enum CPUComparison: Sendable, Hashable {
        case compatible
        case incompatible(String)
        case notChecked(String)
    }

    package var vmName: String
    package var vmState: VMState
    package var domain: GuestDomain?
    package var sourceName: String
    package var source: HostInventory
    package var destinationName: String
    package var destination: HostInventory
    /// Link bandwidth between the hosts, when the inventory gives it (MiB/s).
    package var bandwidthMiBPerSecond: Double?
    /// Measured guest dirty rate (MiB/s), when known.
    package var dirtyRateMiBPerSecond: Double?
    package var cpuComparison: CPUComparison

    package init(
        vmName: String, vmState: VMState, domain: GuestDomain?, sourceName: String, source: HostInventory,
        destinationName: String, destination: HostInventory, bandwidthMiBPerSecond: Double? = nil,
        dirtyRateMiBPerSecond: Double? = nil, cpuComparison: CPUComparison = .notChecked("not asked")
    ) {
        self.vmName = vmName
        self.vmState = vmState
        self.domain = domain
        self.sourceName = sourceName
        self.source = source
        self.destinationName = destinationName
        self.destination = destination
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
        self.dirtyRateMiBPerSecond = dirtyRateMiBPerSecond
        self.cpuComparison = cpuComparison
    }
}

/// The pre-flight rules. Each rule yields findings with a stable check id, a severity, a
/// message in the operator's words and a remedy.
package enum CompatibilityRules {
    package static func evaluate(_ subject: CheckSubject, policy: CheckPolicy) -> CompatibilityReport {
        var findings: [CompatibilityFinding] = []
        findings.append(vmExists(subject))
        findings.append(distinctHosts(subject))
        var estimate: MigrationEstimate?
        if let domain = subject.domain {
            let vgpus = domain.vgpus(on: subject.source)
            let hasVGPU = !vgpus.isEmpty
            findings += vgpuChecks(subject, vgpus: vgpus)
            findings += versionChecks(
                subject, hasVGPU: hasVGPU, hasNVIDIAVGPU: vgpus.contains { isNVIDIA($0, subject) }, policy: policy)
            findings.append(postCopy(hasVGPU: hasVGPU, policy: policy))
            findings.append(memory(subject, domain: domain))
            findings.append(cpu(subject))
            let computed = Self.estimate(subject, domain: domain, vgpus: vgpus, policy: policy)
            estimate = computed
            findings += dirtyTracking(subject, vgpus: vgpus, estimate: computed, policy: policy)
            findings.append(downtime(computed, policy: policy, measured: subject.dirtyRateMiBPerSecond != nil))
        }
        return CompatibilityReport(
            vm: subject.vmName, source: subject.sourceName, destination: subject.destinationName, policy: policy.name,
            findings: findings, estimate: estimate)
    }

    // MARK: VM and hosts

    static func vmExists(_ subject: CheckSubject) -> CompatibilityFinding {
        switch subject.vmState {
        case .running:
            CompatibilityFinding("vm.exists", .pass, "VM \(subject.vmName) is running on \(subject.sourceName)")
        case .xmlGiven:
            CompatibilityFinding("vm.exists", .pass, "VM \(subject.vmName) checked from the given domain XML")
        case .notRunning:
            CompatibilityFinding(
                "vm.exists", .fail, "VM \(subject.vmName) is defined on \(subject.sourceName) but not running",
                remedy: "live migration needs a running VM: start it, or move it offline")
        case .notFound:
            CompatibilityFinding(
                "vm.exists", .fail, "VM \(subject.vmName) is not defined on \(subject.sourceName)",
                remedy: "check the name (virsh list --all) and the source host")
        }
    }

    static func distinctHosts(_ subject: CheckSubject) -> CompatibilityFinding {
        if let a = subject.source.hostUUID, let b = subject.destination.hostUUID, a.lowercased() == b.lowercased() {
            return CompatibilityFinding(
                "host.distinct", .fail,
                "\(subject.sourceName) and \(subject.destinationName) are the same host (host UUID \(a))",
                remedy:
                    "choose another destination; if they are different machines, give them distinct host_uuid in libvirtd.conf"
            )
        }
        if subject.sourceName == subject.destinationName {
            return CompatibilityFinding(
                "host.distinct", .fail, "the destination is the source host \(subject.sourceName)",
                remedy: "choose another destination")
        }
        let how =
            subject.source.hostUUID != nil && subject.destination.hostUUID != nil
            ? "host UUIDs differ" : "names differ; host UUIDs not known"
        return CompatibilityFinding("host.distinct", .pass, "source and destination are different hosts (\(how))")
    }

    // MARK: vGPUs

    /// Whether the NVIDIA rules apply to `vgpu`: its device is an NVIDIA GPU, or the source does
    /// not show it (then nothing says they do not).
    static func isNVIDIA(_ vgpu: GuestVGPU, _ subject: CheckSubject) -> Bool {
        vgpu.gpuAddress.flatMap { subject.source.gpu(containing: $0) }?.isNVIDIA ?? true
    }

    /// `GPU 0000:3b:00.0`, or `mdev parent mtty` for a device that is not an NVIDIA GPU.
    static func deviceLabel(_ gpu: PhysicalGPU) -> String {
        gpu.isNVIDIA ? "GPU \(gpu.address)" : "mdev parent \(gpu.address)"
    }

    /// `Dual port serial (mtty-2) on mtty`, for the findings that say an NVIDIA rule does not apply.
    static func otherDevices(_ vgpus: [GuestVGPU]) -> String {
        vgpus.map { vgpu in
            let type = vgpu.hostVGPU.map { host in "\(vgpu.type?.name ?? host.typeName ?? host.typeID) (\(host.typeID))"
            }
            return (type ?? vgpu.source.description) + (vgpu.gpuAddress.map { " on \($0)" } ?? "")
        }.joined(separator: ", ")
    }

    static func vgpuChecks(_ subject: CheckSubject, vgpus: [GuestVGPU]) -> [CompatibilityFinding] {
        guard !vgpus.isEmpty else {
            return [CompatibilityFinding("vgpu.type-offered", .pass, "the VM has no vGPU")]
        }
        var findings: [CompatibilityFinding] = []
        var needed: [String: (count: Int, name: String, board: String?)] = [:]
        for vgpu in vgpus {
            guard let hostVGPU = vgpu.hostVGPU else {
                findings.append(
                    CompatibilityFinding(
                        "vgpu.type-offered", .fail,
                        "the VM's \(vgpu.source) does not exist on \(subject.sourceName), so its type is unknown",
                        remedy: "check the VM runs on \(subject.sourceName) and the host facts are current"))
                continue
            }
            let name = vgpu.type?.name ?? hostVGPU.typeName ?? hostVGPU.typeID
            let nvidia = isNVIDIA(vgpu, subject)
            let sourceBoard = vgpu.gpuAddress.flatMap { subject.source.gpu(containing: $0)?.board }
            let offering = subject.destination.gpus.filter { gpu in
                gpu.interface == hostVGPU.interface && gpu.capacity(ofType: hostVGPU.typeID) != nil
                    && gpu.isNVIDIA == nvidia
            }
            if offering.isEmpty {
                findings.append(
                    CompatibilityFinding(
                        "vgpu.type-offered", .fail,
                        "\(subject.destinationName) offers no \(nvidia ? "vGPU" : "mdev") type \(hostVGPU.typeID) (\(name)) for the VM's \(vgpu.source)",
                        remedy: nvidia
                            ? "migrate to a host with the same GPU board and vGPU type"
                            : "migrate to a host whose driver offers mdev type \(hostVGPU.typeID) (load the same driver there)"
                    ))
                continue
            }
            if !nvidia {
                // Another kind of mediated device: the same mdev type of the same driver is the
                // match; NVIDIA's board rules do not apply (gpu.board says so).
                findings.append(
                    CompatibilityFinding(
                        "vgpu.type-offered", .pass,
                        "\(name) (\(hostVGPU.typeID)) is offered on \(subject.destinationName) \(offering.map(deviceLabel).joined(separator: ", "))"
                    ))
                needed["\(hostVGPU.interface.rawValue)/\(hostVGPU.typeID)", default: (0, name, nil)].count += 1
                continue
            }
            let sameBoard = offering.filter { $0.board?.name == sourceBoard?.name }
            if sameBoard.isEmpty {
                let boards = Set(offering.map { $0.board?.name ?? "unknown board" }).sorted().joined(separator: ", ")
                findings.append(
                    CompatibilityFinding(
                        "vgpu.type-offered", .fail,
                        "\(subject.destinationName) offers \(hostVGPU.typeID) only on \(boards), the VM's vGPU is on \(sourceBoard?.name ?? "an unknown board")",
                        remedy: "NVIDIA vGPU migration needs the same board on both hosts"))
                continue
            }
            findings.append(
                CompatibilityFinding(
                    "vgpu.type-offered", .pass,
                    "\(name) (\(hostVGPU.typeID)) is offered on \(subject.destinationName) GPU \(sameBoard.map(\.address.description).joined(separator: ", "))"
                ))
            let key = "\(hostVGPU.interface.rawValue)/\(hostVGPU.typeID)"
            needed[key, default: (0, name, sourceBoard?.name)].count += 1
        }

        for (key, need) in needed.sorted(by: { $0.key < $1.key }) {
            let typeID = String(key.split(separator: "/", maxSplits: 1)[1])
            let gpus = subject.destination.gpus.filter { $0.board?.name == need.board }
            let free = gpus.compactMap { $0.capacity(ofType: typeID)?.free }.reduce(0, +)
            if free >= need.count {
                findings.append(
                    CompatibilityFinding(
                        "vgpu.capacity", .pass,
                        "\(subject.destinationName) can create \(free) more \(need.name); the VM needs \(need.count)"))
            } else {
                let reasons = gpus.compactMap { gpu in
                    gpu.capacity(ofType: typeID).flatMap { c in
                        c.free == 0 ? "\(deviceLabel(gpu)): \(c.blockedBy ?? "full")" : nil
                    }
                }
                findings.append(
                    CompatibilityFinding(
                        "vgpu.capacity", .fail,
                        "\(subject.destinationName) can create \(free) more \(need.name) but the VM needs \(need.count)"
                            + (reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"),
                        remedy: "free vGPUs there or choose another destination (--to auto)"))
            }
        }

        findings += boardPairs(subject, vgpus: vgpus)
        return findings
    }

    /// NVIDIA's board rules: the same board on both sides; explicitly no migration between
    /// H100/H200/H800, nor between 80 GB PCIe and 94 GB NVL variants.
    static func boardPairs(_ subject: CheckSubject, vgpus: [GuestVGPU]) -> [CompatibilityFinding] {
        var findings: [CompatibilityFinding] = []
        let others = vgpus.filter { vgpu in vgpu.hostVGPU != nil && !isNVIDIA(vgpu, subject) }
        if !others.isEmpty {
            findings.append(
                CompatibilityFinding(
                    "gpu.board", .notApplicable,
                    "\(otherDevices(others)) \(others.count == 1 ? "is not an NVIDIA vGPU" : "are not NVIDIA vGPUs"): NVIDIA's board rules do not apply"
                ))
        }
        let sourceBoards = Set(
            vgpus.filter { isNVIDIA($0, subject) }.compactMap {
                $0.gpuAddress.flatMap { subject.source.gpu(containing: $0)?.board?.name }
            })
        let destinationBoards = Set(subject.destination.gpus.compactMap(\.board?.name))
        for board in sourceBoards.sorted() {
            if destinationBoards.contains(board) {
                findings.append(
                    CompatibilityFinding(
                        "gpu.board", .pass, "\(subject.destinationName) has \(board) GPUs, like the source"))
                continue
            }
            let hopper = ["H100", "H200", "H800"]
            let family = { (name: String) in hopper.first { name.hasPrefix($0) } }
            var reason = "NVIDIA vGPU migration needs the same board on both hosts"
            if let ours = family(board), destinationBoards.contains(where: { family($0) != nil && family($0) != ours })
            {
                reason = "NVIDIA does not support live migration between H100, H200 and H800 boards"
            } else if destinationBoards.contains(where: {
                ($0.hasSuffix("NVL") && !board.hasSuffix("NVL")) || (!$0.hasSuffix("NVL") && board.hasSuffix("NVL"))
            }),
                family(board) != nil
            {
                reason = "NVIDIA does not support live migration between 80 GB PCIe and 94 GB NVL variants"
            }
            let others =
                destinationBoards.isEmpty ? "no known GPU board" : destinationBoards.sorted().joined(separator: ", ")
            findings.append(
                CompatibilityFinding(
                    "gpu.board", .fail,
                    "the VM's vGPU is on \(board); \(subject.destinationName) has \(others): \(reason)",
                    remedy: "choose a destination with \(board) GPUs"))
        }
        return findings
    }

    static func versionChecks(_ subject: CheckSubject, hasVGPU: Bool, hasNVIDIAVGPU: Bool, policy: CheckPolicy)
        -> [CompatibilityFinding]
    {
        guard hasVGPU else {
            return [
                CompatibilityFinding(
                    "versions", .pass,
                    "the VM has no vGPU: the vGPU minimums for libvirt, QEMU and the kernel do not apply")
            ]
        }
        var findings: [CompatibilityFinding] = []
        let hosts = [(subject.sourceName, subject.source), (subject.destinationName, subject.destination)]
        let checks:
            [(id: String, label: String, minimum: VersionNumber, value: (HostInventory) -> String?, hint: String)] = [
                ("versions.libvirt", "libvirt", policy.minimumLibvirt, \.libvirtVersion, "upgrade libvirt"),
                ("versions.qemu", "QEMU", policy.minimumQEMU, \.hypervisorVersion, "upgrade QEMU"),
                ("versions.kernel", "kernel", policy.minimumKernel, \.kernelRelease, "upgrade the host kernel"),
            ]
        for check in checks {
            for (name, host) in hosts {
                guard let text = check.value(host), let version = VersionNumber(text) else {
                    findings.append(
                        CompatibilityFinding(
                            check.id, .warn, "\(check.label) version of \(name) is unknown",
                            remedy: check.id == "versions.kernel"
                                ? "read the host's sysfs/procfs (inspect on the host, or its agent)"
                                : "give the host a libvirt URI in the inventory"))
                    continue
                }
                let isKernel = check.id == "versions.kernel"
                if version < check.minimum, isKernel,
                    let backport = policy.kernelBackports.first(where: { $0.matches(text) })
                {
                    findings.append(
                        CompatibilityFinding(
                            check.id, .pass,
                            "kernel \(text) on \(name) is below \(check.minimum) but is a \(backport.name) kernel (\(backport.oldestRelease) or later), which carries VFIO live migration"
                        ))
                } else if version < check.minimum {
                    findings.append(
                        CompatibilityFinding(
                            check.id, .fail,
                            "\(check.label) \(isKernel ? text : version.description) on \(name) is below \(check.minimum), the minimum for vGPU live migration",
                            remedy: "\(check.hint) on \(name) to \(check.minimum) or later"
                                + (isKernel
                                    ? "; a distribution kernel that carries the VFIO live-migration backport belongs in kernel-backports.yaml"
                                    : "")))
                } else {
                    findings.append(
                        CompatibilityFinding(
                            check.id, .pass, "\(check.label) \(version) on \(name) (minimum \(check.minimum))"))
                }
            }
        }
        if hasNVIDIAVGPU {
            findings.append(driverVersion(subject, policy: policy))
        } else {
            findings.append(
                CompatibilityFinding(
                    "driver.version", .notApplicable,
                    "the VM has no NVIDIA vGPU: the NVIDIA host driver versions do not apply"))
        }
        return findings
    }

    static func driverVersion(_ subject: CheckSubject, policy: CheckPolicy) -> CompatibilityFinding {
        guard let a = subject.source.nvidiaDriverVersion, let b = subject.destination.nvidiaDriverVersion else {
            let missing = [
                subject.source.nvidiaDriverVersion == nil ? subject.sourceName : nil,
                subject.destination.nvidiaDriverVersion == nil ? subject.destinationName : nil,
            ].compactMap { $0 }
            return CompatibilityFinding(
                "driver.version", .warn, "NVIDIA host driver version unknown on \(missing.joined(separator: " and "))",
                remedy: "vGPU migration fails when the versions differ: read the hosts' sysfs (inspect, or the agent)")
        }
        let same: Bool
        switch policy.driverMatch {
        case .exact: same = a == b
        case .branch: same = VersionNumber(a)?.major == VersionNumber(b)?.major
        }
        if same {
            return CompatibilityFinding(
                "driver.version", .pass,
                policy.driverMatch == .exact
                    ? "NVIDIA host driver \(a) on both hosts"
                    : "NVIDIA host drivers \(a) and \(b) are on the same branch (policy: branch)")
        }
        return CompatibilityFinding(
            "driver.version", .fail,
            "NVIDIA host driver \(a) on \(subject.sourceName) differs from \(b) on \(subject.destinationName)"
                + (policy.driverMatch == .branch ? " (not even the same branch)" : ""),
            remedy:
                "vGPU live migration fails when the driver versions differ: install the same vGPU manager version on both hosts"
        )
    }

    static func postCopy(hasVGPU: Bool, policy: CheckPolicy) -> CompatibilityFinding {
        if hasVGPU && policy.postCopy {
            return CompatibilityFinding(
                "policy.post-copy", .fail,
                "policy \(policy.name) uses post-copy, which QEMU refuses for VMs with VFIO devices",
                remedy: "use a policy with post_copy: false")
        }
        return CompatibilityFinding(
            "policy.post-copy", .pass, policy.postCopy ? "post-copy allowed: the VM has no vGPU" : "pre-copy only")
    }

    static func memory(_ subject: CheckSubject, domain: GuestDomain) -> CompatibilityFinding {
        let needed = domain.memoryBytes
        guard let free = subject.destination.freeMemoryBytes else {
            return CompatibilityFinding(
                "memory.destination", .warn,
                "available memory on \(subject.destinationName) is unknown (the VM needs \(mib(needed)) MiB)",
                remedy: "give the host a libvirt URI in the inventory")
        }
        if free < needed {
            return CompatibilityFinding(
                "memory.destination", .fail,
                "\(subject.destinationName) has \(mib(free)) MiB available; the VM needs \(mib(needed)) MiB",
                remedy: "free memory there or choose another destination")
        }
        return CompatibilityFinding(
            "memory.destination", .pass,
            "\(subject.destinationName) has \(mib(free)) MiB available for the VM's \(mib(needed)) MiB")
    }

    static func cpu(_ subject: CheckSubject) -> CompatibilityFinding {
        switch subject.cpuComparison {
        case .compatible:
            CompatibilityFinding(
                "cpu.compatible", .pass, "libvirt finds the VM's CPU runnable on \(subject.destinationName)")
        case .incompatible(let reason):
            CompatibilityFinding(
                "cpu.compatible", .fail, "the VM's CPU is not runnable on \(subject.destinationName): \(reason)",
                remedy: "use a CPU model both hosts support (e.g. a named model instead of host-passthrough)")
        case .notChecked(let reason):
            CompatibilityFinding("cpu.compatible", .warn, "CPU compatibility not checked: \(reason)")
        }
    }

    // MARK: Dirty tracking and downtime

    static func estimate(_ subject: CheckSubject, domain: GuestDomain, vgpus: [GuestVGPU], policy: CheckPolicy)
        -> MigrationEstimate
    {
        var framebuffer = 0.0
        var untracked = 0.0
        for vgpu in vgpus where isNVIDIA(vgpu, subject) {
            let size = Double(vgpu.type?.framebufferMiB ?? 0)
            framebuffer += size
            if !tracksDirtyPages(vgpu, subject) { untracked += size }
        }
        return MigrationEstimate(
            memoryMiB: Double(domain.memoryBytes) / 1_048_576, framebufferMiB: framebuffer,
            untrackedFramebufferMiB: untracked,
            bandwidthMiBPerSecond: subject.bandwidthMiBPerSecond ?? policy.defaultBandwidthMiBPerSecond,
            dirtyRateMiBPerSecond: subject.dirtyRateMiBPerSecond ?? policy.assumedDirtyRateMiBPerSecond,
            downtimeLimitMilliseconds: min(
                MigrationEstimate.qemuDefaultDowntimeMilliseconds, Double(policy.maxDowntimeMilliseconds)))
    }

    /// Both boards are known and both architectures track dirty framebuffer pages.
    static func tracksDirtyPages(_ vgpu: GuestVGPU, _ subject: CheckSubject) -> Bool {
        guard let source = vgpu.gpuAddress.flatMap({ subject.source.gpu(containing: $0)?.board }) else { return false }
        let destination = subject.destination.gpus.first { $0.board?.name == source.name }?.board ?? source
        return source.architecture.dirtyPageTracking && destination.architecture.dirtyPageTracking
    }

    static func dirtyTracking(
        _ subject: CheckSubject, vgpus: [GuestVGPU], estimate: MigrationEstimate, policy: CheckPolicy
    )
        -> [CompatibilityFinding]
    {
        guard !vgpus.isEmpty else { return [] }
        let nvidia = vgpus.filter { isNVIDIA($0, subject) }
        if nvidia.isEmpty {
            return [
                CompatibilityFinding(
                    "gpu.dirty-tracking", .notApplicable,
                    "\(otherDevices(vgpus)) \(vgpus.count == 1 ? "is not an NVIDIA vGPU" : "are not NVIDIA vGPUs"): framebuffer dirty-page tracking does not apply (the device state moves with QEMU's VFIO migration)"
                )
            ]
        }
        let lacking = nvidia.filter { !tracksDirtyPages($0, subject) }
        if lacking.isEmpty {
            return [CompatibilityFinding("gpu.dirty-tracking", .pass, "both GPUs track dirty framebuffer pages")]
        }
        let boards = Set(
            lacking.map { vgpu in
                vgpu.gpuAddress.flatMap { subject.source.gpu(containing: $0)?.board }.map {
                    "\($0.name) (\($0.architecture.name))"
                }
                    ?? "an unknown board"
            }
        ).sorted().joined(separator: ", ")
        let pause = estimate.untrackedFramebufferMiB / max(estimate.bandwidthMiBPerSecond, 0.001)
        return [
            CompatibilityFinding(
                "gpu.dirty-tracking", policy.missingDirtyTracking == .fail ? .fail : .warn,
                "\(boards) has no framebuffer dirty-page tracking: \(Int(estimate.untrackedFramebufferMiB)) MiB of vGPU framebuffer moves while the guest is paused, about \(seconds(pause)) at \(Int(estimate.bandwidthMiBPerSecond)) MiB/s",
                remedy: policy.missingDirtyTracking == .fail
                    ? "use a policy with missing_dirty_tracking: warn to accept that stun time, or a faster migration link"
                    : "expect that stun time, or use a faster migration link")
        ]
    }

    static func downtime(_ estimate: MigrationEstimate, policy: CheckPolicy, measured: Bool) -> CompatibilityFinding {
        let details =
            "RAM \(Int(estimate.memoryMiB)) MiB, vGPU framebuffer \(Int(estimate.framebufferMiB)) MiB (\(Int(estimate.untrackedFramebufferMiB)) MiB untracked), link \(Int(estimate.bandwidthMiBPerSecond)) MiB/s, dirty rate \(Int(estimate.dirtyRateMiBPerSecond)) MiB/s \(measured ? "measured" : "assumed")"
        let cap = Double(policy.maxDowntimeMilliseconds)
        if estimate.downtimeMilliseconds > cap {
            return CompatibilityFinding(
                "downtime.estimate", .fail,
                "estimated downtime \(seconds(estimate.downtimeMilliseconds / 1000)) exceeds the policy cap of \(seconds(cap / 1000)) (\(details))",
                remedy: "raise the policy's max downtime, use a faster link, or lower the guest's load before migrating"
            )
        }
        return CompatibilityFinding(
            "downtime.estimate", .pass,
            "estimated downtime \(seconds(estimate.downtimeMilliseconds / 1000)) within the cap of \(seconds(cap / 1000)), total about \(seconds(estimate.totalSeconds)) (\(details))"
        )
    }

    static func mib(_ bytes: UInt64) -> UInt64 { bytes / 1_048_576 }

    /// `850 ms`, `16.4 s`.
    package static func seconds(_ value: Double) -> String {
        if value < 1 { return "\(Int((value * 1000).rounded())) ms" }
        return String(Double(Int((value * 10).rounded())) / 10) + " s"
    }
}
