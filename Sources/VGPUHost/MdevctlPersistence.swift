import Foundation
import VGPUMigrationCore

/// Makes committed mdevs survive a host reboot with `mdevctl define --uuid U --parent P --type T`.
/// Off unless the agent is started with `--persist-mdevs`.
package struct MdevctlPersistence: Sendable {
    /// The mdevctl program (a path, or a name looked up in PATH).
    package var executable: String

    package init(executable: String) {
        self.executable = executable
    }

    /// Defines `device` persistently; returns why it failed, or nil. Vendor-VF vGPUs are not
    /// mdevs and are left alone.
    package func define(_ device: ReservedDevice) -> String? {
        guard device.interface == .mdev else { return nil }
        return run(
            ["define", "--uuid", device.id, "--parent", device.function.description, "--type", device.typeID],
            what: "define of \(device.id)")
    }

    /// Removes the persistent definition of `device` (the VM left the host); returns why it
    /// failed, or nil.
    package func undefine(_ device: ReservedDevice) -> String? {
        guard device.interface == .mdev else { return nil }
        return run(["undefine", "--uuid", device.id], what: "undefine of \(device.id)")
    }

    private func run(_ arguments: [String], what: String) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            return "mdevctl could not be started: \(error.localizedDescription)"
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            return "mdevctl \(what) failed (exit \(process.terminationStatus)): "
                + message.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }
}
