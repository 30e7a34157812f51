import ArgumentParser
import VGPUCommandSupport

/// `vgpu-migrate`: live migration of VMs with NVIDIA vGPUs between KVM hosts.
package struct VGPUMigrateCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "vgpu-migrate",
        abstract: "Live-migrate VMs that carry NVIDIA vGPUs between libvirt/KVM hosts.",
        discussion: """
            Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 a host could not be reached.
            """,
        version: "0.1.0",
        subcommands: [
            InspectCommand.self, CheckCommand.self, MigrateCommand.self, AbortCommand.self, ReconcileCommand.self,
            HistoryCommand.self,
            ShowCommand.self, PolicyCommand.self,
        ]
    )

    package init() {}

    /// Parses the arguments, runs the command and exits with its code.
    package static func runAndExit(arguments: [String]? = nil) async -> Never {
        await CommandRunner.runAndExit(Self.self, arguments: arguments)
    }
}
