import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A process started for a test and stopped by it: output goes to files, nothing but standard
/// input, output and error is inherited, and `stop()` (also run when the value goes away)
/// ends it with SIGTERM, then SIGKILL.
package final class RunningProcess: @unchecked Sendable {
    package let pid: pid_t
    package let outputFile: URL
    package let errorFile: URL
    private var exited = false
    /// The exit code (128 + the signal when a signal ended it), once it ended.
    private var exitStatus: Int32?
    private let lock = NSLock()
    /// The write end of the process's standard input, when it was started `withInput`.
    private var input: Int32 = -1

    /// Starts `executable` with this process's environment plus `environment`; standard input is
    /// empty, or with `withInput` a pipe the test writes to with ``send(_:)``.
    package init(
        _ executable: URL, _ arguments: [String], directory: URL, environment: [String: String] = [:],
        withInput: Bool = false
    ) throws {
        outputFile = directory.appendingPathComponent("\(executable.lastPathComponent)-\(UUID().uuidString).out")
        errorFile = outputFile.deletingPathExtension().appendingPathExtension("err")
        FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        FileManager.default.createFile(atPath: errorFile.path, contents: nil)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pipeEnds: [Int32] = [-1, -1]
        if withInput {
            guard pipe(&pipeEnds) == 0 else { throw POSIXError(.EMFILE) }
            posix_spawn_file_actions_adddup2(&actions, pipeEnds[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_addopen(&actions, 1, outputFile.path, O_WRONLY | O_APPEND, 0)
        posix_spawn_file_actions_addopen(&actions, 2, errorFile.path, O_WRONLY | O_APPEND, 0)
        markDescriptorsCloseOnExec()
        let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
        let envp =
            ProcessInfo.processInfo.environment.merging(environment) { $1 }.map { strdup("\($0.key)=\($0.value)") }
            + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable.path, &actions, nil, argv, envp)
        if withInput { close(pipeEnds[0]) }
        guard result == 0 else {
            if withInput { close(pipeEnds[1]) }
            throw POSIXError(POSIXErrorCode(rawValue: result) ?? .ENOENT)
        }
        self.pid = pid
        input = pipeEnds[1]
    }

    deinit {
        stop()
        if input >= 0 { close(input) }
    }

    /// Writes `text` to the process's standard input (started `withInput`).
    package func send(_ text: String) {
        guard input >= 0 else { return }
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(input, $0.baseAddress, $0.count) }
    }

    package var standardOutput: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }
    package var standardError: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }

    /// Waits until standard output holds a line matching `predicate`, or the process ends, or
    /// `seconds` pass; returns the line.
    package func waitForLine(within seconds: Double = 30, where predicate: (Substring) -> Bool) -> Substring? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let line = standardOutput.split(separator: "\n").first(where: predicate) { return line }
            if !isRunning { return nil }
            usleep(20_000)
        }
        return nil
    }

    package var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if exited { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid {
            exited = true
            exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        }
        return !exited
    }

    /// Waits up to `seconds` for the process to end; its exit code, or nil while it runs.
    package func waitForExit(within seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning && Date() < deadline { usleep(20_000) }
        lock.lock()
        defer { lock.unlock() }
        return exitStatus
    }

    /// SIGTERM, up to 10 s to end, then SIGKILL.
    package func stop() {
        guard isRunning else { return }
        Glibc.kill(pid, SIGTERM)
        for _ in 0..<500 where isRunning { usleep(20_000) }
        if isRunning { kill() }
    }

    /// SIGKILL, as a crash would end it.
    package func kill() {
        guard isRunning else { return }
        Glibc.kill(pid, SIGKILL)
        lock.lock()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        exited = true
        lock.unlock()
    }
}

/// Marks every descriptor above standard error close-on-exec, so a child inherits none of them.
func markDescriptorsCloseOnExec() {
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        if let descriptor = Int32(name), descriptor > 2 {
            _ = fcntl(descriptor, F_SETFD, fcntl(descriptor, F_GETFD) | FD_CLOEXEC)
        }
    }
}

/// A private CA with a server certificate for 127.0.0.1/localhost and a client certificate,
/// made with openssl for one test.
package struct TestCertificates: Sendable {
    package var caCertificate: String
    package var serverCertificate: String
    package var serverKey: String
    package var clientCertificate: String
    package var clientKey: String
    /// A client certificate from another CA, which the agent must refuse.
    package var strangerCertificate: String
    package var strangerKey: String

    package static func make(in directory: URL) throws -> TestCertificates {
        let openssl = URL(fileURLWithPath: "/usr/bin/openssl")
        func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
        func run(_ arguments: [String]) throws {
            let outcome = try ProcessOutcome.run(openssl, arguments)
            guard outcome.status == 0 else {
                throw CocoaError(
                    .executableLoad,
                    userInfo: [NSLocalizedDescriptionKey: "openssl \(arguments.first ?? ""): \(outcome.standardError)"])
            }
        }
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "stranger-ca"] {
            try run(
                ["req", "-x509"] + key + [
                    "-keyout", path("\(ca).key"), "-out", path("\(ca).pem"), "-days", "2", "-subj",
                    "/CN=vgpu-migrate test \(ca)",
                ])
        }
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n".write(
            toFile: path("server.ext"), atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: path("client.ext"), atomically: true, encoding: .utf8)
        for (name, ca, ext) in [
            ("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("stranger", "stranger-ca", "client.ext"),
        ] {
            try run(
                ["req"] + key + ["-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(name)"])
            try run([
                "x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
                "-CAcreateserial", "-out", path("\(name).pem"), "-days", "2", "-extfile", path(ext),
            ])
        }
        return TestCertificates(
            caCertificate: path("ca.pem"), serverCertificate: path("server.pem"), serverKey: path("server.key"),
            clientCertificate: path("client.pem"), clientKey: path("client.key"),
            strangerCertificate: path("stranger.pem"), strangerKey: path("stranger.key"))
    }
}
