import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUPolicies

/// `vgpu-migrate inspect`: a host's GPUs, their vGPU types with free/used counts, the vGPUs
/// that exist, the NVIDIA driver and the kernel.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a host's GPUs, vGPU types (free/used), existing vGPUs, driver and kernel.",
        discussion: """
            By default the local host is read from sysfs (/sys, /proc). --sysfs-root reads a captured \
            tree instead. --connect adds what libvirt knows (libvirt and QEMU versions, host UUID, \
            memory, CPU); given alone it reads the GPUs from libvirt node devices (mdev only: libvirt \
            shows neither the driver version nor NVIDIA vendor-specific VF vGPUs). The --json output \
            is the host snapshot that check --source-facts/--dest-facts reads.

            'free' is how many more vGPUs of the type can be created on that physical GPU now: it \
            honours the SR-IOV VF count, the type's max_instance and homogeneity (time-sliced vGPUs on \
            one GPU must share one framebuffer size). --json prints the shape documented in docs/inspect-and-check.md.
            """
    )

    @Option(
        name: .customLong("sysfs-root"),
        help: ArgumentHelp("Root of the sysfs/procfs tree to read (default / without --connect).", valueName: "dir"))
    var sysfsRoot: String?

    @Option(
        name: .customLong("connect"),
        help: ArgumentHelp(
            "libvirt URI: adds libvirt's host facts; alone, the GPUs come from libvirt node devices.", valueName: "uri")
    )
    var libvirtURI: String?

    @Option(
        name: .customLong("policies"),
        help: ArgumentHelp("Directory holding gpu-boards.yaml and the policies.", valueName: "dir"))
    var policies: String?

    @Flag(name: .customLong("json"), help: "Print the inventory as JSON.")
    var json = false

    func run() async throws {
        let catalog = try PolicyDirectory.boardCatalog(in: try PolicyDirectory.locate(explicit: policies))
        let host = InventoryHost(
            name: "", libvirtURI: libvirtURI, sysfsRoot: sysfsRoot ?? (libvirtURI == nil ? "/" : nil))
        let loader = HostFactsLoader(
            catalog: catalog, baseDirectory: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        let inventory = try await loader.load(host).facts
        if json {
            print(try InventoryReport.json(inventory))
        } else {
            print(InventoryReport.text(inventory), terminator: "")
        }
    }
}

/// The two renderings of a host inventory.
package enum InventoryReport {
    /// Pretty-printed JSON with sorted keys (stable for scripts and diffs).
    package static func json(_ inventory: HostInventory) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(inventory), as: UTF8.self)
    }

    /// A human table per GPU.
    package static func text(_ inventory: HostInventory) -> String {
        var out = ""
        let sourceText =
            inventory.source.kind == .sysfs
            ? "sysfs at \(inventory.source.location)" : "libvirt \(inventory.source.location)"
        out += "Host \(inventory.hostname ?? "(name unknown)")  (\(sourceText))\n"
        var facts: [String] = []
        facts.append("kernel \(inventory.kernelRelease ?? "unknown")")
        if inventory.nvidiaDriverVersion != nil || HostInventory.expectsNVIDIADriver(inventory.gpus) {
            facts.append("NVIDIA driver \(inventory.nvidiaDriverVersion ?? "unknown")")
        }
        if let libvirt = inventory.libvirtVersion { facts.append("libvirt \(libvirt)") }
        if let hypervisor = inventory.hypervisorVersion { facts.append("hypervisor \(hypervisor)") }
        out += "  " + facts.joined(separator: "   ") + "\n"
        if inventory.gpus.isEmpty { out += "\nNo vGPU-capable GPU found.\n" }

        for gpu in inventory.gpus where !gpu.isNVIDIA {
            out += otherParentText(gpu)
        }
        for gpu in inventory.gpus where gpu.isNVIDIA {
            out += "\nGPU \(gpu.address)  "
            if let board = gpu.board {
                out += "\(board.marketingName) [\(board.name)], \(board.architecture.name), "
                out += board.architecture.dirtyPageTracking ? "dirty-page tracking" : "no dirty-page tracking"
            } else {
                let ids = gpu.pci.map { String(format: "%04x:%04x", $0.vendor, $0.device) } ?? "ids unknown"
                out += "unknown board (\(ids))"
            }
            out += "\n  "
            let layout: String
            switch (gpu.interface, gpu.sriov) {
            case (.mdev, false):
                layout = "mdev on \(gpu.functions.count == 1 ? "one parent" : "\(gpu.functions.count) parents")"
            case (.mdev, true): layout = "mdev on \(gpu.functions.count) SR-IOV virtual functions"
            case (.vendorVFIO, _):
                layout =
                    "NVIDIA vendor-specific VFIO on \(gpu.functions.count) virtual function\(gpu.functions.count == 1 ? "" : "s")"
            }
            out += layout
            if !gpu.physicalFunctionVisible || (gpu.sriov == false && gpu.functions.first?.address != gpu.address) {
                out += " (physical function not visible)"
            }
            out += "; \(gpu.vgpus.count) vGPU\(gpu.vgpus.count == 1 ? "" : "s") in use\n"

            var rows: [[String]] = [["TYPE", "NAME", "FB MiB", "MAX", "USED", "FREE", "NOTE"]]
            for capacity in gpu.vgpuTypes {
                rows.append([
                    capacity.type.id, capacity.type.name ?? "?", capacity.type.framebufferMiB.map(String.init) ?? "?",
                    capacity.maxInstances.map(String.init) ?? "?", String(capacity.used), String(capacity.free),
                    capacity.free == 0 ? shortReason(capacity.blockedBy) : "",
                ])
            }
            out += table(rows, rightAligned: [2, 3, 4, 5], indent: "  ")
            if !gpu.vgpus.isEmpty {
                out += "  vGPUs:\n"
                for vgpu in gpu.vgpus {
                    out += "    \(vgpu.id)  \(vgpu.typeName ?? "?") (\(vgpu.typeID))"
                    if vgpu.interface == .mdev { out += " on \(vgpu.function)" }
                    out += "\n"
                }
            }
        }
        if !inventory.diagnostics.isEmpty {
            out += "\n"
            for diagnostic in inventory.diagnostics { out += diagnostic.description + "\n" }
        }
        return out
    }

    /// A mediated-device parent that is not an NVIDIA GPU: its types with what the kernel
    /// reports (name, device API, available instances) and its devices.
    private static func otherParentText(_ gpu: PhysicalGPU) -> String {
        var out = "\nmdev parent \(gpu.address)  "
        if let pci = gpu.pci {
            out += String(format: "PCI device %04x:%04x", pci.vendor, pci.device)
        } else {
            out += "not a PCI device"
        }
        out += ", not an NVIDIA GPU; \(gpu.vgpus.count) mdev\(gpu.vgpus.count == 1 ? "" : "s") in use\n"
        var rows: [[String]] = [["TYPE", "NAME", "API", "USED", "FREE", "NOTE"]]
        for capacity in gpu.vgpuTypes {
            rows.append([
                capacity.type.id, capacity.type.name ?? "?", capacity.type.deviceAPI ?? "?", String(capacity.used),
                String(capacity.free), capacity.free == 0 ? shortReason(capacity.blockedBy) : "",
            ])
        }
        out += table(rows, rightAligned: [3, 4], indent: "  ")
        if !gpu.vgpus.isEmpty {
            out += "  mdevs:\n"
            for vgpu in gpu.vgpus { out += "    \(vgpu.id)  \(vgpu.typeName ?? "?") (\(vgpu.typeID))\n" }
        }
        return out
    }

    private static func shortReason(_ reason: String?) -> String {
        guard let reason else { return "" }
        return String(reason.prefix { $0 != ":" })
    }

    static func table(_ rows: [[String]], rightAligned: Set<Int>, indent: String) -> String {
        guard let header = rows.first else { return "" }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in rows {
            var cells: [String] = []
            for (column, cell) in row.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                cells.append(rightAligned.contains(column) ? padding + cell : cell + padding)
            }
            var line = indent + cells.joined(separator: "  ")
            while line.last?.isWhitespace == true { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
