import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUTestSupport

let operatorToken = "operator-token-7f3a9c2e1b"
let readerToken = "reader-token-4d8e6a1f0c"

/// A real `vgpu-agent` process serving a copy of a fixture tree on a loopback port.
final class AgentUnderTest: @unchecked Sendable {
    let directory: URL
    let tree: URL
    let stateDirectory: URL
    let certificates: TestCertificates?
    let mutualTLS: Bool
    let extraArguments: [String]
    private(set) var process: RunningProcess?
    private(set) var baseURL = ""

    init(fixture: String, tls: Bool = false, mutualTLS: Bool = false, arguments: [String] = []) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-agent-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        tree = directory.appendingPathComponent("tree")
        stateDirectory = directory.appendingPathComponent("state")
        try FileManager.default.copyItem(at: TestData.fixtures.appendingPathComponent("hosts/\(fixture)"), to: tree)
        try "# roles\noperator \(operatorToken)\nreader \(readerToken)\n".write(
            to: directory.appendingPathComponent("tokens"), atomically: true, encoding: .utf8)
        certificates = tls || mutualTLS ? try TestCertificates.make(in: directory) : nil
        self.mutualTLS = mutualTLS
        self.extraArguments = arguments
        try start()
    }

    deinit {
        process?.stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// Starts (or restarts) the agent on a fresh port with the same tree and state.
    func start() throws {
        var arguments = [
            "--sysfs-root", tree.path, "--listen", "127.0.0.1:0", "--state-dir", stateDirectory.path, "--tokens",
            directory.appendingPathComponent("tokens").path, "--policies", TestData.policies.path,
            "--expiry-interval-ms", "100",
        ]
        if let certificates {
            arguments += ["--tls-cert", certificates.serverCertificate, "--tls-key", certificates.serverKey]
            if mutualTLS { arguments += ["--client-ca", certificates.caCertificate] }
        } else {
            arguments.append("--insecure-http")
        }
        let process = try RunningProcess(
            try ProductRunner.executable("vgpu-agent"), arguments + extraArguments, directory: directory)
        self.process = process
        guard let line = process.waitForLine(where: { $0.hasPrefix("vgpu-agent listening on ") }) else {
            throw CocoaError(
                .executableLoad, userInfo: [NSLocalizedDescriptionKey: "agent did not start: \(process.standardError)"])
        }
        baseURL = String(line.dropFirst("vgpu-agent listening on ".count))
    }

    func client(token: String? = operatorToken, clientCertificate: Bool = true, retries: Int = 0) -> AgentClient {
        AgentClient(
            endpoint: AgentEndpoint(
                baseURL: baseURL, token: token, caFile: certificates?.caCertificate,
                clientCertificate: mutualTLS && clientCertificate ? certificates?.clientCertificate : nil,
                clientKey: mutualTLS && clientCertificate ? certificates?.clientKey : nil, timeoutSeconds: 20,
                retries: retries))
    }

    /// Whether the mdev exists in the served tree.
    func mdevExists(_ uuid: String) -> Bool {
        (try? FileManager.default.destinationOfSymbolicLink(
            atPath: tree.appendingPathComponent("sys/bus/mdev/devices/\(uuid)").path)) != nil
    }

    /// The UUIDs of the mdevs in the served tree (its `sys/bus/mdev/devices` links).
    func mdevs() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: tree.appendingPathComponent("sys/bus/mdev/devices").path))
            ?? []
    }

    func mdevCount() -> Int { mdevs().count }

    func vendorType(_ vf: String) -> String? {
        try? String(
            contentsOf: tree.appendingPathComponent("sys/bus/pci/devices/\(vf)/nvidia/current_vgpu_type"),
            encoding: .utf8
        )
        .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

func request(
    _ type: String, count: Int = 1, owner: String = "migration-1", lease: Int = 300, key: String = UUID().uuidString
) -> ReservationRequest {
    ReservationRequest(typeID: type, count: count, owner: owner, leaseSeconds: lease, idempotencyKey: key)
}

/// Polls `condition` for up to `seconds` (state that changes in the background); no timing asserted.
func eventually(within seconds: Double = 15, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}
