import ArgumentParser
import Foundation

/// Runs a root command and exits with the project's exit codes: a ``CommandFailure`` prints
/// `error: ...` and exits with its code, a usage error prints the usage and exits 2, help and
/// version requests exit 0.
package enum CommandRunner {
    ///
    /// `beforeExit` runs before the process exits, whatever the outcome (a library still loading
    /// in the background is waited for there).
    package static func runAndExit<Root: ParsableCommand>(
        _ root: Root.Type, arguments: [String]?, beforeExit: () -> Void = {}
    ) async -> Never {
        // An output whose reader went away (`| head`) must not end a migration halfway: writes
        // to it fail instead of the process being killed.
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try root.parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            beforeExit()
            Foundation.exit(0)
        } catch let failure as CommandFailure {
            writeStandardError("error: \(failure)")
            beforeExit()
            Foundation.exit(failure.exitCode)
        } catch {
            beforeExit()
            if root.exitCode(for: error) == .validationFailure {
                writeStandardError(root.fullMessage(for: error))
                Foundation.exit(CommandFailure.usageOrConfiguration)
            }
            root.exit(withError: error)
        }
    }

    /// Writes a line to standard error; a closed standard error is ignored.
    package static func writeStandardError(_ text: String) {
        writeLine(text, to: STDERR_FILENO)
    }

    /// Writes a line to a file descriptor; a closed reader is ignored.
    package static func writeLine(_ text: String, to descriptor: Int32) {
        write(text + "\n", to: descriptor)
    }

    /// Writes text to a file descriptor, all of it; a closed reader is ignored.
    package static func write(_ text: String, to descriptor: Int32) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            bytes = bytes.dropFirst(written)
        }
    }
}
