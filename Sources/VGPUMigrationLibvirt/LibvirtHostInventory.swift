import VGPUMigrationCore

/// The host inventory as libvirt sees it: node devices (mdev parents and mdevs), libvirt and
/// hypervisor versions, host name. For hosts reached only through libvirt.
package enum LibvirtHostInventory {
    package static func read(connection: LibvirtConnection, catalog: GPUBoardCatalog) async throws -> HostInventory {
        var devices: [NodeDevice] = []
        var diagnostics: [Diagnostic] = []
        for (name, xml) in try await connection.nodeDeviceXMLs() {
            do {
                devices.append(try NodeDevice.parse(xml: xml))
            } catch {
                diagnostics.append(Diagnostic(.warning, "node device '\(name)' is skipped: \(error)"))
            }
        }
        let built = NodeDeviceInventory.physicalGPUs(devices: devices, catalog: catalog)
        diagnostics += built.diagnostics
        diagnostics.append(
            Diagnostic(
                .note,
                "read through libvirt: NVIDIA driver version, kernel release and vendor-specific VF vGPUs are not visible",
                remedy: "run inspect on the host (or use its agent) for the full picture"))
        return HostInventory(
            source: InventorySource(kind: .libvirt, location: connection.uri),
            hostname: try await connection.hostname(),
            libvirtVersion: try await connection.libraryVersion().description,
            hypervisorVersion: try await connection.hypervisorVersion().description,
            gpus: built.gpus, diagnostics: diagnostics)
    }
}
