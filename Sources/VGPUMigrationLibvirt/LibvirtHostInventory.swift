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
        var inventory = HostInventory(
            source: InventorySource(kind: .libvirt, location: connection.uri),
            hostname: try await connection.hostname(),
            gpus: built.gpus, diagnostics: diagnostics)
        try await addHostFacts(from: connection, to: &inventory)
        return inventory
    }

    /// Adds what libvirt knows of the host (versions, host UUID, CPU, memory) to an inventory
    /// read from sysfs.
    package static func addHostFacts(from connection: LibvirtConnection, to inventory: inout HostInventory) async throws
    {
        inventory.libvirtVersion = try await connection.libraryVersion().description
        inventory.hypervisorVersion = try await connection.hypervisorVersion().description
        if inventory.hostname == nil { inventory.hostname = try await connection.hostname() }
        let capabilities = try await connection.capabilitiesXML()
        if let host = try? XMLReader.parseDocument(capabilities).root.child("host") {
            inventory.hostUUID = host.child("uuid").flatMap { canonicalUUID($0.trimmedText) }
            inventory.cpuArchitecture = host.child("cpu")?.child("arch")?.trimmedText
            inventory.cpuModel = host.child("cpu")?.child("model")?.trimmedText
        }
        do {
            let memory = try await connection.memory()
            inventory.totalMemoryBytes = memory.total
            inventory.freeMemoryBytes = memory.free
        } catch {
            inventory.diagnostics.append(Diagnostic(.note, "host memory unknown: \(error)"))
        }
    }
}
