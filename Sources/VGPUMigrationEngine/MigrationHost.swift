import VGPUMigrationCore

/// One end of a migration as the engine sees it: the host's facts, its hypervisor and its agent,
/// and how libvirt reaches it.
package struct MigrationHost: Sendable {
    /// The host's name in the inventory.
    package var name: String
    package var facts: HostInventory
    /// nil when the host has no libvirt connection (facts from a snapshot or an agent only).
    package var hypervisor: (any Hypervisor)?
    /// The host's vGPU agent; nil when it has none.
    package var agent: (any HostAgent)?
    /// The URI the source's libvirt migrates to (`qemu+tcp://dst/system`).
    package var libvirtURI: String?
    /// Where the migration data goes, when not where libvirt is reached.
    package var migrationAddress: String?

    package init(
        name: String, facts: HostInventory, hypervisor: (any Hypervisor)?, agent: (any HostAgent)?,
        libvirtURI: String? = nil, migrationAddress: String? = nil
    ) {
        self.name = name
        self.facts = facts
        self.hypervisor = hypervisor
        self.agent = agent
        self.libvirtURI = libvirtURI
        self.migrationAddress = migrationAddress
    }
}

/// How the engine reaches a host by its inventory name: its hypervisor and its agent.
package protocol HostDirectory: Sendable {
    /// The host's hypervisor; fails (``MigrationEngineError/Kind/configuration`` or
    /// ``MigrationEngineError/Kind/unreachable``) when the inventory gives no way to reach it or
    /// it does not answer.
    func hypervisor(of host: String) async throws(MigrationEngineError) -> any Hypervisor
    /// The host's agent; nil when the inventory gives it none.
    func agent(of host: String) throws(MigrationEngineError) -> (any HostAgent)?
}
