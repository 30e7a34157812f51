import CLibvirt
import VGPUMigrationCore

extension LibvirtConnection: Hypervisor {
    package func guestDomain(named name: String) async throws -> (any HypervisorDomain)? {
        try await lookupDomain(name)
    }
}

extension LibvirtDomain: HypervisorDomain {}

extension LibvirtError: HypervisorError {
    /// libvirt's VIR_ERR_OPERATION_ABORTED: the job ended because `virDomainAbortJob` was called.
    package var abortedJob: Bool { code == Int32(VIR_ERR_OPERATION_ABORTED.rawValue) }
}
