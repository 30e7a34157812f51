import Foundation
import VGPUCommandSupport
import VGPUMigrationEngine

/// Where `migrate` writes: on a terminal the job's progress is one line redrawn in place, with
/// the steps printed above it; otherwise every line (progress too) is a plain log line. With
/// `--json` everything goes to standard error, standard output being kept for the record.
final class ProgressDisplay: @unchecked Sendable {
    private let lock = NSLock()
    private let descriptor: Int32
    private let redraws: Bool
    private var showing = false
    private var asking = false
    private let quiet: Bool

    /// `quiet` prints nothing (a command whose `--json` output is all it says).
    init(json: Bool, quiet: Bool = false) {
        descriptor = json ? STDERR_FILENO : STDOUT_FILENO
        redraws = isatty(descriptor) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        self.quiet = quiet
    }

    /// Whether a person is watching (the progress line is redrawn in place).
    var isInteractive: Bool { redraws }

    /// A step: a line of its own.
    func line(_ text: String) {
        if quiet { return }
        lock.lock()
        defer { lock.unlock() }
        if showing {
            write("\r\u{1B}[K")
            showing = false
        }
        write(text + "\n")
    }

    /// Takes the redrawn line away, so that what is written next starts a line of its own.
    func settle() {
        lock.lock()
        defer { lock.unlock() }
        if showing {
            write("\r\u{1B}[K")
            showing = false
        }
    }

    /// The job's progress: redrawn in place on a terminal, a log line otherwise.
    func progress(_ text: String) {
        if quiet { return }
        lock.lock()
        defer { lock.unlock() }
        if asking { return }
        if redraws {
            write("\r\u{1B}[K" + text)
            showing = true
        } else {
            write("  " + text + "\n")
        }
    }

    /// Asks a question on the terminal and reads the answer (nil at end of input); the progress
    /// line stays still meanwhile.
    func ask(_ question: String) -> String? {
        lock.lock()
        if showing { write("\r\u{1B}[K") }
        showing = false
        asking = true
        write(question)
        lock.unlock()
        let answer = readLine(strippingNewline: true)
        lock.lock()
        asking = false
        lock.unlock()
        return answer
    }

    private func write(_ text: String) {
        CommandRunner.write(text, to: descriptor)
    }
}

/// Ctrl-C during `migrate`: on a terminal, asks whether to abort; otherwise (a script, a
/// service manager) aborts at once. An abort ends the migration `cancelled`, the VM on the
/// source and the destination reservation released.
final class OperatorInterrupt: @unchecked Sendable {
    /// What the engine watches.
    let abort = AbortRequest()
    private var source: (any DispatchSourceSignal)?
    private let queue = DispatchQueue(label: "vgpu-migrate.interrupt")

    /// Takes over SIGINT; `describe` names the migration in the question.
    func install(display: ProgressDisplay, describe: @escaping @Sendable () -> String) {
        signal(SIGINT, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGINT, queue: queue)
        source.setEventHandler { [abort] in
            if abort.isRequested { return }
            guard display.isInteractive, isatty(STDIN_FILENO) == 1 else {
                display.line("interrupted: aborting \(describe())")
                abort.request()
                return
            }
            let answer =
                display.ask("Abort \(describe())? The VM stays on the source. [y/N] ")?
                .trimmingCharacters(in: .whitespaces).lowercased() ?? "n"
            if answer == "y" || answer == "yes" {
                display.line("aborting on request")
                abort.request()
            } else {
                display.line("continuing")
            }
        }
        source.resume()
        self.source = source
    }
}
