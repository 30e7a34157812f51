import ArgumentParser
import Foundation

/// Runs a root command and exits with the project's exit codes: a ``CommandFailure`` prints
/// `error: ...` and exits with its code, a usage error prints the usage and exits 2, help and
/// version requests exit 0.
package enum CommandRunner {
    package static func runAndExit<Root: ParsableCommand>(_ root: Root.Type, arguments: [String]?) async -> Never {
        do {
            var command = try root.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Foundation.exit(0)
        } catch let failure as CommandFailure {
            writeStandardError("error: \(failure)")
            Foundation.exit(failure.exitCode)
        } catch {
            if root.exitCode(for: error) == .validationFailure {
                writeStandardError(root.fullMessage(for: error))
                Foundation.exit(CommandFailure.usageOrConfiguration)
            }
            root.exit(withError: error)
        }
    }

    package static func writeStandardError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
