import Foundation

/// A private PostgreSQL server for one test suite: initdb into its own directory, listening on
/// 127.0.0.1 only, run as the `postgres` user, stopped (and its files removed) afterwards.
package struct PostgresServer: Sendable {
    package var directory: String
    package var port: Int
    package var binaries: String
    /// The network namespace the server listens in (its 127.0.0.1); nil: this machine's.
    package var namespace: String?

    @TaskLocal package static var current: PostgresServer?

    package var adminURL: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// The newest installed server (Debian: /usr/lib/postgresql/N/bin).
    static func binaryDirectory() throws -> String {
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
            .compactMap(Int.init).sorted()
        guard let newest = versions.last else {
            throw CocoaError(
                .fileNoSuchFile,
                userInfo: [
                    NSLocalizedDescriptionKey: "no PostgreSQL server in /usr/lib/postgresql; install 'postgresql'"
                ])
        }
        return "/usr/lib/postgresql/\(newest)/bin"
    }

    static func runAsPostgres(_ arguments: [String], in namespace: String? = nil) throws -> ProcessOutcome {
        let asPostgres = ["/usr/sbin/runuser", "-u", "postgres", "--"] + arguments
        guard let namespace else {
            return try ProcessOutcome.run(URL(fileURLWithPath: asPostgres[0]), Array(asPostgres.dropFirst()))
        }
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        return try ProcessOutcome.run(
            URL(fileURLWithPath: ip ?? "/usr/sbin/ip"), ["netns", "exec", namespace] + asPostgres)
    }

    /// Starts a server of its own (directory and port), so several can run at once; a port
    /// taken between choosing and binding it is retried with another.
    package static func start(namespace: String? = nil) throws -> PostgresServer {
        var attempt = 0
        while true {
            do {
                return try start(port: try freeLoopbackPort(), namespace: namespace)
            } catch {
                attempt += 1
                if attempt == 3 { throw error }
            }
        }
    }

    /// A TCP port on 127.0.0.1 nobody listens on now (the kernel's choice).
    private static func freeLoopbackPort() throws -> Int {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(descriptor, generic, length) == 0 && getsockname(descriptor, generic, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func start(port: Int, namespace: String?) throws -> PostgresServer {
        let binaries = try binaryDirectory()
        let directory = "/tmp/vgpu-migrate-test-postgres-\(UUID().uuidString.prefix(8).lowercased())"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = try ProcessOutcome.run(URL(fileURLWithPath: "/bin/chown"), ["postgres:postgres", directory])
        let server = PostgresServer(directory: directory, port: port, binaries: binaries, namespace: namespace)
        let initdb = try runAsPostgres([
            "\(binaries)/initdb", "-D", "\(directory)/data", "-A", "trust", "-U", "postgres", "--no-sync",
        ])
        guard initdb.status == 0 else {
            server.stop()
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "initdb failed: \(initdb.standardError)"])
        }
        let started = try server.startServer()
        guard started.status == 0 else {
            let log = (try? String(contentsOfFile: "\(directory)/server.log", encoding: .utf8)) ?? ""
            server.stop()
            throw CocoaError(
                .executableLoad,
                userInfo: [NSLocalizedDescriptionKey: "PostgreSQL did not start: \(started.standardError) \(log)"])
        }
        return server
    }

    /// Creates an empty database and returns its URL.
    package func createDatabase() throws -> String {
        let name = "vgpu_test_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        let outcome = try Self.runAsPostgres([
            "\(binaries)/psql", "-h", directory, "-p", String(port), "-U", "postgres", "-q", "-c",
            "CREATE DATABASE \(name)",
        ])
        guard outcome.status == 0 else {
            throw CocoaError(
                .executableLoad,
                userInfo: [NSLocalizedDescriptionKey: "CREATE DATABASE failed: \(outcome.standardError)"])
        }
        return "postgres://postgres@127.0.0.1:\(port)/\(name)"
    }

    private func startServer() throws -> ProcessOutcome {
        try Self.runAsPostgres(
            [
                "\(binaries)/pg_ctl", "-D", "\(directory)/data", "-l", "\(directory)/server.log", "-w", "-t", "60",
                "-o",
                "-p \(port) -k \(directory) -c listen_addresses=127.0.0.1 -c fsync=off", "start",
            ], in: namespace)
    }

    /// Stops the server as an operator's restart does (`pg_ctl stop -m fast`: connections are
    /// closed), keeping its data for ``resume()``.
    package func halt() throws {
        let outcome = try Self.runAsPostgres(
            ["\(binaries)/pg_ctl", "-D", "\(directory)/data", "-m", "fast", "-w", "stop"], in: namespace)
        guard outcome.status == 0 else {
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "pg_ctl stop failed: \(outcome.standardError)"])
        }
    }

    /// Starts the server ``halt()`` stopped, on the same port with the same data.
    package func resume() throws {
        let outcome = try startServer()
        guard outcome.status == 0 else {
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "pg_ctl start failed: \(outcome.standardError)"])
        }
    }

    package func stop() {
        _ = try? Self.runAsPostgres(
            ["\(binaries)/pg_ctl", "-D", "\(directory)/data", "-m", "immediate", "-w", "stop"], in: namespace)
        try? FileManager.default.removeItem(atPath: directory)
    }
}
