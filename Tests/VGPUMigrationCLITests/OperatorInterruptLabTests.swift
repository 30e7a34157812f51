import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

/// Ctrl-C during `migrate`, and what a terminal shows; `script` (util-linux) gives the coordinator
/// a real pseudo-terminal.
@Suite(
    "Ctrl-C and the progress line (real libvirt daemons, QEMU, a pseudo-terminal)", .serialized, .twoHostLab,
    .tags(.lab))
struct OperatorInterruptLabTests {
    @Test("without a terminal, SIGINT aborts at once: cancelled, the guest stays on src")
    func interruptWithoutTerminal() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("ctrl-c-plain") }
        let arguments =
            ["migrate", "ctrl-c-plain", "--from", "src", "--to", "dst"]
            + (try await slowMigrationOptions(lab, vm: "ctrl-c-plain", in: directory))
        let migration = try RunningProcess(
            try ProductRunner.executable("vgpu-migrate"), arguments, directory: directory)
        defer { migration.stop() }
        // Plain log lines: each progress report is a line of its own.
        #expect(migration.waitForLine { $0.hasPrefix("  migrating (first pass)") } != nil, "\(migration.standardError)")
        kill(migration.pid, SIGINT)
        let cancelled = migration.waitForLine(within: 60) { $0.hasPrefix("cancelled: ") }
        #expect(cancelled != nil, "\(migration.standardOutput)\(migration.standardError)")
        #expect(migration.standardOutput.contains("interrupted: aborting the migration of ctrl-c-plain from src"))
        #expect(!migration.standardOutput.contains("\u{1B}["))
        #expect(try runningOn(lab, "ctrl-c-plain") == ["src"])
    }

    @Test("on a terminal: the progress line is redrawn in place; Ctrl-C asks, 'y' aborts → cancelled, guest on src")
    func interruptOnTerminal() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("ctrl-c-tty") }
        let terminal = try vgpuMigrateOnTerminal(
            ["migrate", "ctrl-c-tty", "--from", "src", "--to", "dst"]
                + (try await slowMigrationOptions(lab, vm: "ctrl-c-tty", in: directory)), in: directory)
        defer { terminal.stop() }
        #expect(
            terminal.waitForLine { $0.contains("\r\u{1B}[Kmigrating (first pass)") } != nil,
            "\(terminal.standardOutput)")
        terminal.send("\u{03}")  // Ctrl-C: the terminal sends SIGINT to the coordinator
        #expect(terminal.waitForLine { $0.contains("The VM stays on the source. [y/N]") } != nil)
        terminal.send("y\n")
        let cancelled = terminal.waitForLine(within: 60) { $0.contains("cancelled: aborted by the operator") }
        #expect(cancelled != nil, "\(terminal.standardOutput)")
        #expect(try runningOn(lab, "ctrl-c-tty") == ["src"])
    }

    @Test("on a terminal, answering no lets the migration go on to completion")
    func declinedInterrupt() async throws {
        let lab = try #require(Lab.current)
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        defer { lab.removeGuest("ctrl-c-no") }
        let terminal = try vgpuMigrateOnTerminal(
            ["migrate", "ctrl-c-no", "--from", "src", "--to", "dst"]
                + (try await slowMigrationOptions(lab, vm: "ctrl-c-no", in: directory)), in: directory)
        defer { terminal.stop() }
        #expect(terminal.waitForLine { $0.contains("migrating (first pass)") } != nil, "\(terminal.standardOutput)")
        terminal.send("\u{03}")
        #expect(terminal.waitForLine { $0.contains("[y/N]") } != nil)
        terminal.send("n\n")
        #expect(terminal.waitForLine(within: 120) { $0.contains("completed: VM runs on dst") } != nil)
        #expect(terminal.standardOutput.contains("continuing"))
        #expect(try runningOn(lab, "ctrl-c-no") == ["dst"])
    }
}
