import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Where test data lives: the project's `Fixtures/` and the shared real-world data in
/// `../shared/realdata` (override with `VGPU_REALDATA`).
package enum TestData {
    /// The package root (the directory holding Package.swift).
    package static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    package static var fixtures: URL { packageRoot.appendingPathComponent("Fixtures") }
    package static var policies: URL { packageRoot.appendingPathComponent("policies") }

    /// The shared real-world data. Tests that need it fail (not skip) when it is absent.
    package static var realdata: URL {
        if let override = ProcessInfo.processInfo.environment["VGPU_REALDATA"] {
            return URL(fileURLWithPath: override)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/realdata")
    }

    package static func text(_ url: URL) throws -> String {
        try String(contentsOf: url, encoding: .utf8)
    }

    /// Runs `body` with a copy of the fixture host tree `name` (`Fixtures/hosts/NAME`) in a new
    /// temporary directory, removed afterwards.
    package static func withFixtureCopy(_ name: String, _ body: (URL) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-tree-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tree = directory.appendingPathComponent("tree")
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("hosts/\(name)"), to: tree)
        try await body(tree)
    }

    /// Every file under `directory` whose name ends with `suffix`, sorted by path.
    package static func files(under directory: URL, suffix: String) throws -> [URL] {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: directory.path])
        }
        return enumerator.compactMap { $0 as? URL }.filter { $0.lastPathComponent.hasSuffix(suffix) }
            .sorted { $0.path < $1.path }
    }
}

/// What a finished process wrote and how it ended.
package struct ProcessOutcome: Sendable {
    package var status: Int32
    package var standardOutput: String
    package var standardError: String

    /// Runs `executable` to completion with no standard input.
    ///
    /// The child gets only standard input, output and error: every other descriptor is closed
    /// in it, so daemons it leaves running hold nothing of this process.
    package static func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws
        -> ProcessOutcome
    {
        var output: [Int32] = [0, 0]
        var error: [Int32] = [0, 0]
        guard pipe(&output) == 0, pipe(&error) == 0 else { throw POSIXError(.EMFILE) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, error[1], 2)
        // Nothing above standard error may reach the child (dup2 clears close-on-exec on 1 and 2).
        markDescriptorsCloseOnExec()

        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable.path, &actions, nil, argv, envp)
        close(output[1])
        close(error[1])
        guard spawned == 0 else {
            close(output[0])
            close(error[0])
            throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .ENOENT)
        }
        // Drain standard error on another thread so neither pipe can fill up and block the child.
        let errorData = PipeReader(FileHandle(fileDescriptor: error[0], closeOnDealloc: true))
        let outputData = FileHandle(fileDescriptor: output[0], closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return ProcessOutcome(
            status: exitStatus, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData.wait(), as: UTF8.self))
    }
}

/// Reads a pipe to its end on a thread of its own.
private final class PipeReader: @unchecked Sendable {
    private var data = Data()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            data = handle.readDataToEndOfFile()
            done.signal()
        }
    }

    func wait() -> Data {
        done.wait()
        return data
    }
}

/// Runs the project's executables as an operator would.
package enum ProductRunner {
    /// The built executable `name`: beside the test bundle (`swift test`), else in `.build/debug`.
    package static func executable(_ name: String) throws -> URL {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(name),
            TestData.packageRoot.appendingPathComponent(".build/debug/\(name)"),
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw CocoaError(
                .fileNoSuchFile,
                userInfo: [
                    NSLocalizedDescriptionKey: "executable \(name) not built; looked at \(candidates.map(\.path))"
                ])
        }
        return found
    }

    /// Runs `name` with `arguments` to completion and returns its outcome.
    package static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws
        -> ProcessOutcome
    {
        try ProcessOutcome.run(try executable(name), arguments, environment: environment)
    }
}

/// The project's two-host libvirt lab (`scripts/lab`), brought up in a directory of its own for
/// a test suite and brought down after it, also when a test fails.
package struct Lab: Sendable {
    package var directory: String
    package var sourceURI: String
    package var destinationURI: String
    /// The hosts' addresses on the link between their network namespaces (migration data).
    package var sourceAddress: String
    package var destinationAddress: String
    /// The third host, `spare`, when the lab was brought up with one, and its address.
    package var spareURI: String?
    package var spareAddress: String?

    @TaskLocal package static var current: Lab?

    /// Runs `scripts/lab` with this lab's directory.
    @discardableResult
    package static func script(_ arguments: [String], directory: String, spare: Bool = false) throws
        -> ProcessOutcome
    {
        try ProcessOutcome.run(
            TestData.packageRoot.appendingPathComponent("scripts/lab"), arguments,
            environment: ["VGPU_LAB_DIR": directory, "VGPU_LAB_SPARE": spare ? "1" : "0"])
    }

    /// Brings a lab up in a new directory under /tmp, with a third host `spare` when asked.
    package static func up(spare: Bool = false) throws -> Lab {
        let directory =
            "/tmp/vgpu-migrate-test-lab-\(ProcessInfo.processInfo.processIdentifier)-\(UInt16.random(in: 0...UInt16.max))"
        let outcome = try script(["up"], directory: directory, spare: spare)
        guard outcome.status == 0 else {
            _ = try? script(["down"], directory: directory)
            try? FileManager.default.removeItem(atPath: directory)
            throw CocoaError(
                .executableLoad,
                userInfo: [NSLocalizedDescriptionKey: "scripts/lab up failed: \(outcome.standardError)"])
        }
        var values: [String: String] = [:]
        for line in outcome.standardOutput.split(separator: "\n") where line.hasPrefix("export ") {
            let pair = line.dropFirst(7).split(separator: "=", maxSplits: 1)
            if pair.count == 2 {
                values[String(pair[0])] = String(pair[1]).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            }
        }
        guard let source = values["VGPU_LAB_SRC_URI"], let destination = values["VGPU_LAB_DST_URI"],
            let sourceAddress = values["VGPU_LAB_SRC_ADDRESS"], let destinationAddress = values["VGPU_LAB_DST_ADDRESS"]
        else {
            _ = try? script(["down"], directory: directory)
            try? FileManager.default.removeItem(atPath: directory)
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "scripts/lab printed no URIs and addresses"])
        }
        if spare && (values["VGPU_LAB_SPARE_URI"] == nil || values["VGPU_LAB_SPARE_ADDRESS"] == nil) {
            _ = try? script(["down"], directory: directory)
            try? FileManager.default.removeItem(atPath: directory)
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "scripts/lab started no spare host"])
        }
        return Lab(
            directory: directory, sourceURI: source, destinationURI: destination, sourceAddress: sourceAddress,
            destinationAddress: destinationAddress, spareURI: values["VGPU_LAB_SPARE_URI"],
            spareAddress: values["VGPU_LAB_SPARE_ADDRESS"])
    }

    package func down() {
        _ = try? Lab.script(["down"], directory: directory)
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Defines a guest with no operating system (the firmware idles) on the source host, with
    /// an mdev hostdev when `mdev` is given, and starts it unless `start` is false. Returns the
    /// outcomes of `virsh define` and `virsh start`.
    @discardableResult
    package func defineGuest(_ name: String, memoryMiB: Int, mdev: String? = nil, start: Bool = true) throws
        -> [ProcessOutcome]
    {
        let type = FileManager.default.isWritableFile(atPath: "/dev/kvm") ? "kvm" : "qemu"
        let hostdev =
            mdev.map {
                "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='\($0)'/></source></hostdev>"
            } ?? ""
        let file = URL(fileURLWithPath: directory).appendingPathComponent("\(name).xml")
        try """
        <domain type='\(type)'>
          <name>\(name)</name>
          <memory unit='MiB'>\(memoryMiB)</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\(hostdev)<memballoon model='none'/></devices>
        </domain>
        """.write(to: file, atomically: true, encoding: .utf8)
        var outcomes = [try virsh(sourceURI, ["define", file.path])]
        if start { outcomes.append(try virsh(sourceURI, ["start", name])) }
        return outcomes
    }

    /// Defines and starts the lab guest (`scripts/lab guest`): a no-OS kernel that dirties
    /// `dirtyMiBPerSecond` of its `workingSetMiB` and checks every page it wrote.
    /// `spoiledPages` pages are spoiled once at start, to see the check report them.
    package func startCheckingGuest(
        _ name: String, dirtyMiBPerSecond: Int, workingSetMiB: Int, memoryMiB: Int, on host: String = "src",
        spoiledPages: Int = 0
    ) throws -> ProcessOutcome {
        try Lab.script(
            [
                "guest", name, String(dirtyMiBPerSecond), String(workingSetMiB), String(memoryMiB), host,
                String(spoiledPages),
            ], directory: directory)
    }

    /// Destroys and undefines `name` on every host, wherever it is (the lab guest keeps a host
    /// CPU busy while it runs).
    package func removeGuest(_ name: String) {
        for uri in [sourceURI, destinationURI] + (spareURI.map { [$0] } ?? []) {
            _ = try? virsh(uri, ["destroy", name])
            _ = try? virsh(uri, ["undefine", name])
        }
    }

    /// The lab guest's once-a-second reports on `host` ("src" or "dst"), oldest first.
    package func guestReports(_ name: String, on host: String) -> [GuestReport] {
        let log = "\(directory)/hosts/\(host)/log/qemu/\(name)-serial.log"
        guard let text = try? String(contentsOfFile: log, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { GuestReport(line: String($0)) }
    }

    /// SIGKILLs the libvirt daemon of `host` ("src", "dst" or "spare"), as a crash would end it.
    package func killDaemon(_ host: String) throws {
        let pidFile = "\(directory)/hosts/\(host)/run/libvirtd.pid"
        let text = try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let pid = Int32(text) else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "\(pidFile) holds no pid"])
        }
        kill(pid, SIGKILL)
    }

    /// Runs `virsh -c URI arguments...`.
    @discardableResult
    package func virsh(_ uri: String, _ arguments: [String]) throws -> ProcessOutcome {
        try ProcessOutcome.run(URL(fileURLWithPath: "/usr/bin/virsh"), ["-q", "-c", uri] + arguments)
    }
}

/// One line of the lab guest's serial output:
/// `lab-guest tick=N generation=G dirty=R achieved=A checked=C errors=E`.
package struct GuestReport: Equatable, Sendable {
    package var tick: Int
    package var generation: Int
    package var dirtyMiBPerSecond: Int
    package var achievedMiBPerSecond: Int
    package var checkedPages: Int
    package var errors: Int

    package init?(line: String) {
        guard line.hasPrefix("lab-guest tick=") else { return nil }
        var values: [String: Int] = [:]
        for field in line.split(separator: " ").dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = Int(pair[1]) else { return nil }
            values[String(pair[0])] = value
        }
        guard let tick = values["tick"], let generation = values["generation"], let dirty = values["dirty"],
            let achieved = values["achieved"], let checked = values["checked"], let errors = values["errors"]
        else { return nil }
        self.tick = tick
        self.generation = generation
        self.dirtyMiBPerSecond = dirty
        self.achievedMiBPerSecond = achieved
        self.checkedPages = checked
        self.errors = errors
    }
}
