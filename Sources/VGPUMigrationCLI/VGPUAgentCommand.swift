import ArgumentParser

/// `vgpu-agent`: the per-host service. This version only states that it does not serve yet.
package struct VGPUAgentCommand: ParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "vgpu-agent",
        abstract: "Per-host vGPU agent (HTTPS service for host facts and reservations).",
        discussion:
            "Not implemented in this version: it exits with status 1. Use 'vgpu-migrate inspect' on the host meanwhile."
    )

    package init() {}

    package func run() throws {
        throw CommandFailure(
            "vgpu-agent does not serve requests yet in this version",
            remedy: "run 'vgpu-migrate inspect --json' on the host for its facts")
    }

    /// Parses the arguments, runs and exits with the command's code.
    package static func runAndExit(arguments: [String]? = nil) async -> Never {
        await CommandRunner.runAndExit(Self.self, arguments: arguments)
    }
}
