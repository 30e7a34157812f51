import ArgumentParser
import Foundation
import Logging
import VGPUCommandSupport
import VGPUMigrationLibvirt

/// `vgpu-migrate`: live migration of VMs with NVIDIA vGPUs between KVM hosts.
package struct VGPUMigrateCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "vgpu-migrate",
        abstract: "Live-migrate VMs that carry NVIDIA vGPUs between libvirt/KVM hosts.",
        discussion: """
            Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 a host could not be reached. \
            The engine's log goes to standard error at the level $VGPU_MIGRATE_LOG_LEVEL names (trace, debug, \
            info, notice, warning, error, critical; default error), with the migration id and VM on each line.
            """,
        version: "0.1.0",
        subcommands: [
            InspectCommand.self, CheckCommand.self, MigrateCommand.self, AbortCommand.self, ReconcileCommand.self,
            HistoryCommand.self,
            ShowCommand.self, DrainCommand.self, CordonCommand.self, UncordonCommand.self, PolicyCommand.self,
        ]
    )

    package init() {}

    /// Parses the arguments, runs the command and exits with its code.
    package static func runAndExit(arguments: [String]? = nil) async -> Never {
        bootstrapLogging()
        await CommandRunner.runAndExit(Self.self, arguments: arguments) {
            LibvirtConnection.finishLoadingLibrary()
        }
    }

    /// The engine's log: standard error, at $VGPU_MIGRATE_LOG_LEVEL (default `error`: the
    /// command's own lines say what happened; the log is for finding out why).
    static func bootstrapLogging() {
        let named = ProcessInfo.processInfo.environment["VGPU_MIGRATE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = named ?? .error
            return handler
        }
    }
}
