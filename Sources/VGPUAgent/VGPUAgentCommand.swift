import ArgumentParser
import Foundation
import Hummingbird
import Logging
import VGPUCommandSupport
import VGPUHost
import VGPUMigrationCore

/// `vgpu-agent`: the per-host service the coordinator reserves vGPUs through.
package struct VGPUAgentCommand: AsyncParsableCommand {
    package static let configuration = CommandConfiguration(
        commandName: "vgpu-agent",
        abstract: "Serve a host's vGPU facts and durable vGPU reservations over HTTPS.",
        discussion: """
            API (JSON): GET /v1/facts, GET /v1/vgpus, GET|POST /v1/reservations, GET|DELETE \
            /v1/reservations/ID, POST /v1/reservations/ID/commit|retire; GET /healthz (no token) and /metrics \
            (Prometheus). Every route but /healthz needs 'Authorization: Bearer TOKEN'; the token file \
            holds 'reader TOKEN' and 'operator TOKEN' lines (readers read, operators reserve).

            With --sysfs-root / the kernel acts on the writes. Any other root is a captured or fixture \
            tree, served through an emulator that behaves like the kernel and the NVIDIA driver.

            Reservations are journaled in --state-dir before devices are created; after a restart \
            they are reconciled with the host (interrupted ones rolled back, vanished devices marked \
            lost, ended leases released).
            """
    )

    @Option(name: .customLong("sysfs-root"), help: ArgumentHelp("Root of the host's sysfs tree.", valueName: "dir"))
    var sysfsRoot = "/"

    @Option(name: .customLong("listen"), help: ArgumentHelp("Address and port to serve on.", valueName: "host:port"))
    var listen = "127.0.0.1:8443"

    @Option(
        name: .customLong("state-dir"), help: ArgumentHelp("Where the reservation journal lives.", valueName: "dir"))
    var stateDirectory = "/var/lib/vgpu-agent"

    @Option(
        name: .customLong("tokens"),
        help: ArgumentHelp("Token file ('reader|operator TOKEN' lines).", valueName: "file"))
    var tokensFile: String

    @Option(name: .customLong("tls-cert"), help: ArgumentHelp("Server certificate chain (PEM).", valueName: "file"))
    var certificate: String?

    @Option(name: .customLong("tls-key"), help: ArgumentHelp("Server private key (PEM).", valueName: "file"))
    var privateKey: String?

    @Option(
        name: .customLong("client-ca"),
        help: ArgumentHelp("Require client certificates from this CA (mutual TLS).", valueName: "file"))
    var clientCA: String?

    @Flag(name: .customLong("insecure-http"), help: "Serve plain HTTP without TLS (tests and labs only).")
    var insecureHTTP = false

    @Option(name: .customLong("policies"), help: ArgumentHelp("Directory holding gpu-boards.yaml.", valueName: "dir"))
    var policies: String?

    @Option(
        name: .customLong("max-instances"),
        help: ArgumentHelp("Most vGPUs of a type per GPU, e.g. nvidia-558=24 (repeatable).", valueName: "type=count"))
    var maxInstances: [String] = []

    @Flag(
        name: .customLong("persist-mdevs"),
        help: "On commit, define the mdevs with mdevctl so they survive a host reboot (off by default).")
    var persistMdevs = false

    @Option(name: .customLong("mdevctl"), help: ArgumentHelp("The mdevctl program.", valueName: "path"))
    var mdevctl = "mdevctl"

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body accepted.")
    var maxBodyBytes = 65_536

    @Option(name: .customLong("expiry-interval-ms"), help: "How often ended leases are looked for.")
    var expiryIntervalMilliseconds = 1000

    package init() {}

    package func validate() throws {
        if (certificate == nil) != (privateKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if certificate == nil && !insecureHTTP {
            throw ValidationError("give --tls-cert and --tls-key, or --insecure-http to serve without TLS")
        }
        if clientCA != nil && certificate == nil { throw ValidationError("--client-ca needs --tls-cert and --tls-key") }
        guard listenAddress != nil else { throw ValidationError("--listen takes host:port, e.g. 127.0.0.1:8443") }
        if !(1...(16 << 20)).contains(maxBodyBytes) { throw ValidationError("--max-body-bytes must be 1 to 16777216") }
        if !(10...60_000).contains(expiryIntervalMilliseconds) {
            throw ValidationError("--expiry-interval-ms must be 10 to 60000")
        }
        _ = try limits()
    }

    var listenAddress: (host: String, port: Int)? {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return host.isEmpty ? nil : (host, port)
    }

    func limits() throws -> [String: Int] {
        var limits: [String: Int] = [:]
        for entry in maxInstances {
            let parts = entry.split(separator: "=")
            guard parts.count == 2, isSafeTypeID(String(parts[0])), let count = Int(parts[1]), count > 0 else {
                throw ValidationError("--max-instances takes TYPE=COUNT, e.g. nvidia-558=24; got '\(entry)'")
            }
            limits[String(parts[0])] = count
        }
        return limits
    }

    package func run() async throws {
        let catalog = try PolicyDirectory.boardCatalog(in: try PolicyDirectory.locate(explicit: policies))
        let tokens: AgentTokens
        do {
            tokens = try AgentTokens.load(path: tokensFile)
        } catch {
            throw CommandFailure(error.message, exitCode: CommandFailure.usageOrConfiguration)
        }
        let sysfs: any SysfsIO
        if URL(fileURLWithPath: sysfsRoot).standardizedFileURL.path == "/" {
            sysfs = DirectorySysfs(root: "/")
        } else {
            do {
                sysfs = try SysfsEmulator(root: sysfsRoot, catalog: catalog)
            } catch {
                throw CommandFailure(
                    "cannot read the tree \(sysfsRoot): \(error)", exitCode: CommandFailure.usageOrConfiguration)
            }
        }
        let allocator = VGPUAllocator(sysfs: sysfs, catalog: catalog, maxInstances: try limits())
        let book: ReservationBook
        do {
            book = try ReservationBook(
                allocator: allocator, stateDirectory: URL(fileURLWithPath: stateDirectory),
                persistence: persistMdevs ? MdevctlPersistence(executable: mdevctl) : nil)
            for warning in await book.openingWarnings {
                CommandRunner.writeStandardError("vgpu-agent: warning: \(warning)")
            }
            let settled = try await book.reconcile()
            for reservation in settled {
                CommandRunner.writeStandardError(
                    "vgpu-agent: reservation \(reservation.id) is now \(reservation.state.rawValue): \(reservation.reason ?? "")"
                )
            }
        } catch {
            throw CommandFailure("cannot open the reservations in \(stateDirectory): \(error)")
        }

        var logger = Logger(label: "vgpu-agent")
        logger.logLevel = .notice
        let (host, port) = listenAddress!
        let scheme = certificate == nil ? "http" : "https"
        let configuration = AgentServerConfiguration(
            host: host, port: port, tokens: tokens, certificate: certificate, privateKey: privateKey,
            clientCA: clientCA,
            maxBodyBytes: maxBodyBytes)
        let expiry = LeaseExpiryService(book: book, interval: .milliseconds(expiryIntervalMilliseconds)) {
            reservation in
            CommandRunner.writeStandardError(
                "vgpu-agent: reservation \(reservation.id) is now \(reservation.state.rawValue): \(reservation.reason ?? "")"
            )
        }
        let application: any ApplicationProtocol
        do {
            application = try AgentServer.application(
                configuration: configuration, book: book, allocator: allocator, logger: logger, services: [expiry]
            ) { port in
                CommandRunner.writeLine("vgpu-agent listening on \(scheme)://\(host):\(port)", to: STDOUT_FILENO)
            }
        } catch {
            throw CommandFailure("cannot set up the server: \(error)", exitCode: CommandFailure.usageOrConfiguration)
        }
        try await application.runService()
    }

    /// Parses the arguments, runs and exits with the command's code.
    package static func runAndExit(arguments: [String]? = nil) async -> Never {
        await CommandRunner.runAndExit(Self.self, arguments: arguments)
    }
}
