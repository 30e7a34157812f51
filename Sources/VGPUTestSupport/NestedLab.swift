import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Brings the nested VFIO lab up around a suite and down after it, also when a test fails; the
/// suite's tests find it in ``NestedLab/current``. It takes the same lock as the two-host lab:
/// the nested hosts run under TCG and need this machine's CPUs to themselves.
package struct NestedVFIOLab: SuiteTrait, TestScoping {
    package init() {}

    package func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await withLab(NestedLab.up, down: { $0.down() }) { lab in
            try await NestedLab.$current.withValue(lab) { try await function() }
        }
    }
}

extension Trait where Self == NestedVFIOLab {
    /// The nested VFIO lab of `scripts/nested-lab` (real mdevs: mtty), for the suite.
    package static var nestedVFIOLab: Self { NestedVFIOLab() }
}

/// The project's nested VFIO lab (`scripts/nested-lab`): two nested hosts under TCG with Debian's
/// 6.12 kernel, the sample mdev driver mtty, libvirt, QEMU and the project's vgpu-agent on their
/// real `/sys`, on a bridge in a network namespace of the lab's own. The coordinator and virsh
/// run in that namespace.
package struct NestedLab: Sendable {
    package var directory: String
    package var namespace: String
    package var inventory: String
    package var sourceURI: String
    package var destinationURI: String
    package var mdevType: String

    @TaskLocal package static var current: NestedLab?

    static var script: URL { TestData.packageRoot.appendingPathComponent("scripts/nested-lab") }

    /// Brings a lab up in a new directory under /tmp, its agents defining committed mdevs with
    /// mdevctl (`--persist-mdevs`). The first run builds the hosts' image (cached afterwards).
    package static func up() throws -> NestedLab {
        let directory =
            "/tmp/vgpu-migrate-nested-test-\(ProcessInfo.processInfo.processIdentifier)-\(UInt16.random(in: 0...UInt16.max))"
        let environment = [
            "VGPU_NESTED_DIR": directory, "VGPU_NESTED_AGENT": try ProductRunner.executable("vgpu-agent").path,
            "VGPU_NESTED_PERSIST_MDEVS": "1",
        ]
        let outcome = try ProcessOutcome.run(script, ["up"], environment: environment)
        func failed(_ message: String) -> any Error {
            _ = try? ProcessOutcome.run(script, ["down"], environment: ["VGPU_NESTED_DIR": directory])
            try? FileManager.default.removeItem(atPath: directory)
            return CocoaError(.executableLoad, userInfo: [NSLocalizedDescriptionKey: message])
        }
        guard outcome.status == 0 else { throw failed("scripts/nested-lab up failed: \(outcome.standardError)") }
        var values: [String: String] = [:]
        for line in outcome.standardOutput.split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst(7).split(separator: "=", maxSplits: 1)
            if pair.count == 2 {
                values[String(pair[0])] = String(pair[1]).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            }
        }
        guard let namespace = values["VGPU_NESTED_NETNS"], let inventory = values["VGPU_NESTED_INVENTORY"],
            let source = values["VGPU_NESTED_SRC_URI"], let destination = values["VGPU_NESTED_DST_URI"],
            let type = values["VGPU_NESTED_MDEV_TYPE"]
        else { throw failed("scripts/nested-lab up printed no namespace, inventory and URIs") }
        return NestedLab(
            directory: directory, namespace: namespace, inventory: inventory, sourceURI: source,
            destinationURI: destination, mdevType: type)
    }

    package func down() {
        _ = try? ProcessOutcome.run(Self.script, ["down"], environment: ["VGPU_NESTED_DIR": directory])
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// `scripts/nested-lab ARGUMENTS` for this lab.
    @discardableResult
    package func script(_ arguments: [String]) throws -> ProcessOutcome {
        try ProcessOutcome.run(Self.script, arguments, environment: ["VGPU_NESTED_DIR": directory])
    }

    /// Runs a shell command inside nested host `host` ("src" or "dst").
    @discardableResult
    package func run(_ host: String, _ command: String) throws -> ProcessOutcome {
        try script(["run", host, command])
    }

    /// `ip netns exec NAMESPACE executable arguments`: a program of this machine in the lab's
    /// network namespace, for ``RunningProcess`` and ``ProcessOutcome``.
    package func inNamespace(_ executable: URL, _ arguments: [String]) -> (URL, [String]) {
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        return (URL(fileURLWithPath: ip ?? "/usr/sbin/ip"), ["netns", "exec", namespace, executable.path] + arguments)
    }

    /// Runs the project's `vgpu-migrate` in the lab's namespace, to completion.
    package func coordinator(_ arguments: [String], environment: [String: String] = [:]) throws -> ProcessOutcome {
        let (executable, wrapped) = inNamespace(try ProductRunner.executable("vgpu-migrate"), arguments)
        return try ProcessOutcome.run(executable, wrapped, environment: environment)
    }

    /// Starts the project's `vgpu-migrate` in the lab's namespace, in the background.
    package func startCoordinator(_ arguments: [String], directory: URL, environment: [String: String] = [:]) throws
        -> RunningProcess
    {
        let (executable, wrapped) = inNamespace(try ProductRunner.executable("vgpu-migrate"), arguments)
        return try RunningProcess(executable, wrapped, directory: directory, environment: environment)
    }

    /// `virsh -q -c URI ARGUMENTS` for host `host`, from this machine.
    @discardableResult
    package func virsh(_ host: String, _ arguments: [String]) throws -> ProcessOutcome {
        let (executable, wrapped) = inNamespace(
            URL(fileURLWithPath: "/usr/bin/virsh"),
            ["-q", "-c", host == "src" ? sourceURI : destinationURI] + arguments)
        return try ProcessOutcome.run(executable, wrapped)
    }

    /// An HTTP GET of the agent of `host` (`/v1/reservations/ID`), from this machine; the body.
    package func agent(_ host: String, get path: String) throws -> ProcessOutcome {
        let token = try String(contentsOfFile: "\(directory)/token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let address = host == "src" ? "10.238.0.2" : "10.238.0.3"
        let (executable, wrapped) = inNamespace(
            URL(fileURLWithPath: "/usr/bin/curl"),
            ["-sS", "-m", "30", "-H", "Authorization: Bearer \(token)", "http://\(address):7100\(path)"])
        return try ProcessOutcome.run(executable, wrapped)
    }

    /// Defines and starts the parked lab guest `name` on `host` with a new mtty mdev, made by the
    /// host's agent or by hand; returns the mdev's UUID.
    package func startGuest(_ name: String, on host: String = "src", mdevBy how: String = "agent") throws -> String {
        let outcome = try script(["guest", name, host, how])
        guard outcome.status == 0, let uuid = outcome.standardOutput.split(separator: "\n").last else {
            throw CocoaError(
                .executableLoad,
                userInfo: [NSLocalizedDescriptionKey: "scripts/nested-lab guest failed: \(outcome.standardError)"])
        }
        return String(uuid)
    }

    /// The mdevs in the real sysfs of `host` (`/sys/bus/mdev/devices`).
    package func mdevs(on host: String) throws -> Set<String> {
        try lines(run(host, "ls /sys/bus/mdev/devices"))
    }

    /// The mdevs mdevctl has defined on `host` (`mdevctl list --defined`), by UUID.
    package func definedMdevs(on host: String) throws -> Set<String> {
        Set(
            try lines(run(host, "mdevctl list --defined")).compactMap {
                $0.split(separator: " ").first.map(String.init)
            })
    }

    /// The running domains of `host`.
    package func runningDomains(on host: String) throws -> Set<String> {
        try lines(virsh(host, ["list", "--name"]))
    }

    /// Clean hosts again (`scripts/nested-lab reset`): no guest, reservation, mdev or mdevctl
    /// definition left on either.
    package func reset() {
        _ = try? script(["reset"])
    }

    private func lines(_ outcome: ProcessOutcome) throws -> Set<String> {
        guard outcome.status == 0 else {
            throw CocoaError(
                .fileReadUnknown,
                userInfo: [NSLocalizedDescriptionKey: "nested lab command failed: \(outcome.standardError)"])
        }
        return Set(outcome.standardOutput.split(separator: "\n").map(String.init).filter { !$0.isEmpty })
    }
}
