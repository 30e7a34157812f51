import VGPUMigrationCore

/// Reads `gpu-boards.yaml`: the GPU architectures and boards the project knows.
package enum GPUBoardCatalogFile {
    /// The file name inside a policies directory.
    package static let fileName = "gpu-boards.yaml"

    /// Parses the text of the board table. `file` names it in errors.
    package static func parse(_ text: String, file: String) throws(PolicyFileError) -> GPUBoardCatalog {
        let document = try PolicyYAML.parse(text, file: file)
        _ = try document.mapping(allowedKeys: ["architectures", "boards"], what: "the board table")

        var architectures: [String: GPUArchitecture] = [:]
        let architecturesNode = try document.required("architectures", in: "the board table")
        for (key, value) in try architecturesNode.mapping(what: "'architectures'") {
            let name = try key.string(what: "an architecture name")
            _ = try value.mapping(allowedKeys: ["dirty_page_tracking"], what: "architecture '\(name)'")
            let tracking = try value.required("dirty_page_tracking", in: "architecture '\(name)'")
                .bool(what: "dirty_page_tracking")
            architectures[name] = GPUArchitecture(name: name, dirtyPageTracking: tracking)
        }

        var boards: [GPUBoard] = []
        let boardKeys: Set<String> = [
            "name", "marketing_name", "architecture", "vgpu_type_prefix", "framebuffer_gb", "max_vgpus_per_gpu",
            "pci_ids",
        ]
        for entry in try document.required("boards", in: "the board table").sequence(what: "'boards'") {
            _ = try entry.mapping(allowedKeys: boardKeys, what: "a board")
            let name = try entry.required("name", in: "a board").string(what: "name")
            let what = "board '\(name)'"
            if boards.contains(where: { $0.name == name }) {
                throw entry.error("board '\(name)' is listed twice")
            }
            let architectureNode = try entry.required("architecture", in: what)
            let architectureName = try architectureNode.string(what: "architecture")
            guard let architecture = architectures[architectureName] else {
                throw architectureNode.error(
                    "\(what) names architecture '\(architectureName)', which 'architectures' does not define")
            }
            var pciIDs: [PCIIdentity] = []
            for idNode in try entry.required("pci_ids", in: what).sequence(what: "pci_ids") {
                let text = try idNode.string(what: "a PCI id")
                guard let id = Self.pciIdentity(text) else {
                    throw idNode.error(
                        "'\(text)' is not a PCI id; write vendor:device or vendor:device/subsystem_vendor:subsystem_device in hex"
                    )
                }
                pciIDs.append(id)
            }
            if pciIDs.isEmpty { throw entry.error("\(what) has no pci_ids") }
            boards.append(
                GPUBoard(
                    name: name,
                    marketingName: try entry.required("marketing_name", in: what).string(what: "marketing_name"),
                    architecture: architecture,
                    vgpuTypePrefix: try entry.required("vgpu_type_prefix", in: what).string(what: "vgpu_type_prefix"),
                    framebufferGB: try entry.required("framebuffer_gb", in: what).int(
                        what: "framebuffer_gb", range: 1...4096),
                    maxVGPUsPerGPU: try entry.optional("max_vgpus_per_gpu")?.int(
                        what: "max_vgpus_per_gpu", range: 1...1024),
                    pciIDs: pciIDs))
        }
        return GPUBoardCatalog(boards: boards)
    }

    /// `10de:1eb8` or `10de:1eb8/10de:12a2`.
    static func pciIdentity(_ text: String) -> PCIIdentity? {
        let halves = text.split(separator: "/", omittingEmptySubsequences: false)
        guard halves.count == 1 || halves.count == 2 else { return nil }
        func pair(_ text: Substring) -> (UInt16, UInt16)? {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let a = parsePCIIDNumber(parts[0]), let b = parsePCIIDNumber(parts[1]) else {
                return nil
            }
            return (a, b)
        }
        guard let ids = pair(halves[0]) else { return nil }
        if halves.count == 2 {
            guard let subsystem = pair(halves[1]) else { return nil }
            return PCIIdentity(vendor: ids.0, device: ids.1, subsystemVendor: subsystem.0, subsystemDevice: subsystem.1)
        }
        return PCIIdentity(vendor: ids.0, device: ids.1)
    }
}
