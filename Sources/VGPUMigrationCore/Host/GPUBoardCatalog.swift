/// A GPU architecture and what matters about it for migration.
package struct GPUArchitecture: Sendable, Hashable, Codable {
    package var name: String
    /// Whether the GPU tracks dirty framebuffer pages. Without it the whole vGPU framebuffer
    /// is copied while the guest is paused.
    package var dirtyPageTracking: Bool

    package init(name: String, dirtyPageTracking: Bool) {
        self.name = name
        self.dirtyPageTracking = dirtyPageTracking
    }

    enum CodingKeys: String, CodingKey {
        case name
        case dirtyPageTracking = "dirty_page_tracking"
    }
}

/// A GPU board model (T4, A100 40GB, L40S, H100 NVL, ...).
package struct GPUBoard: Sendable, Hashable, Codable {
    /// Short name, unique in the catalog (`A100-40GB`, `H100-NVL`).
    package var name: String
    /// Name as NVIDIA sells it.
    package var marketingName: String
    package var architecture: GPUArchitecture
    /// Board part of its vGPU type names (`A100` in `GRID A100-20C`, `H100L` in `NVIDIA H100L-47C`).
    package var vgpuTypePrefix: String
    /// Framebuffer of one physical GPU in GB, as NVIDIA's type names count it.
    package var framebufferGB: Int
    /// Most time-sliced vGPUs one physical GPU carries, when lower than framebuffer ÷ type size.
    package var maxVGPUsPerGPU: Int?
    /// PCI ids of the physical function.
    package var pciIDs: [PCIIdentity]

    package init(
        name: String, marketingName: String, architecture: GPUArchitecture, vgpuTypePrefix: String, framebufferGB: Int,
        maxVGPUsPerGPU: Int?, pciIDs: [PCIIdentity]
    ) {
        self.name = name
        self.marketingName = marketingName
        self.architecture = architecture
        self.vgpuTypePrefix = vgpuTypePrefix
        self.framebufferGB = framebufferGB
        self.maxVGPUsPerGPU = maxVGPUsPerGPU
        self.pciIDs = pciIDs
    }

    enum CodingKeys: String, CodingKey {
        case name
        case marketingName = "marketing_name"
        case architecture
        case vgpuTypePrefix = "vgpu_type_prefix"
        case framebufferGB = "framebuffer_gb"
        case maxVGPUsPerGPU = "max_vgpus_per_gpu"
        case pciIDs = "pci_ids"
    }

    /// How many vGPUs of `profile` one GPU of this board carries, by NVIDIA's rule:
    /// framebuffer ÷ type framebuffer, capped by ``maxVGPUsPerGPU``. Nil for MIG-backed types,
    /// whose count depends on the GPU-instance layout.
    package func maxInstances(of profile: VGPUProfile) -> Int? {
        guard profile.isTimeSliced, profile.framebufferGB > 0 else { return nil }
        let byFramebuffer = framebufferGB / profile.framebufferGB
        return min(byFramebuffer, maxVGPUsPerGPU ?? byFramebuffer)
    }
}

/// The table of known boards, read from `policies/gpu-boards.yaml`.
package struct GPUBoardCatalog: Sendable, Hashable {
    package var boards: [GPUBoard]

    package init(boards: [GPUBoard]) {
        self.boards = boards
    }

    package func board(named name: String) -> GPUBoard? {
        boards.first { $0.name == name }
    }

    /// Finds the board of a physical GPU from its PCI ids and, where the ids are shared by
    /// several boards or unknown (a VF seen without its physical function), from the board
    /// prefix of the vGPU type names it offers.
    package func identify(pci: PCIIdentity?, vgpuTypeNames: [String]) -> GPUBoard? {
        let prefixes = Set(vgpuTypeNames.compactMap { VGPUProfile(typeName: $0)?.boardPrefix })
        var candidates = boards
        var matchedByDevice = false
        if let pci {
            let byDevice = boards.filter { board in
                board.pciIDs.contains { $0.vendor == pci.vendor && $0.device == pci.device }
            }
            if !byDevice.isEmpty {
                candidates = byDevice
                matchedByDevice = true
                if let subsystemDevice = pci.subsystemDevice, let subsystemVendor = pci.subsystemVendor {
                    let exact = byDevice.filter { board in
                        board.pciIDs.contains {
                            $0.vendor == pci.vendor && $0.device == pci.device
                                && $0.subsystemVendor == subsystemVendor && $0.subsystemDevice == subsystemDevice
                        }
                    }
                    if exact.count == 1 { return exact[0] }
                }
            }
        }
        if prefixes.count == 1, let prefix = prefixes.first {
            let byPrefix = candidates.filter { $0.vgpuTypePrefix == prefix }
            if byPrefix.count == 1 { return byPrefix[0] }
        }
        if matchedByDevice, candidates.count == 1 { return candidates[0] }
        return nil
    }
}
