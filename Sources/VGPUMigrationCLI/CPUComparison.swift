import VGPUMigrationCore
import VGPUMigrationLibvirt

/// libvirt's CPU comparison on the destination, shared by `check` and `migrate`.
enum CPUComparison {
    /// Compares a VM's named CPU model with what the destination's hypervisor can run.
    static func compare(domain: GuestDomain?, on destination: LoadedHost) async -> CheckSubject.CPUComparison {
        guard let domain else { return .notChecked("no VM") }
        guard let connection = destination.connection else {
            return .notChecked("no libvirt connection to \(destination.name)")
        }
        guard let cpu = domain.cpuXML else {
            return .notChecked("the VM's XML has no <cpu> element; QEMU's default CPU model runs anywhere")
        }
        if let mode = domain.cpuMode, mode != "custom" {
            return .notChecked("the VM uses CPU mode '\(mode)'; libvirt compares only named CPU models")
        }
        do {
            if let reason = try await connection.incompatibility(
                ofGuestCPU: cpu, architecture: domain.architecture, virtType: domain.hypervisorType)
            {
                return .incompatible(reason)
            }
            return .compatible
        } catch {
            return .notChecked("libvirt could not compare: \(error)")
        }
    }
}
