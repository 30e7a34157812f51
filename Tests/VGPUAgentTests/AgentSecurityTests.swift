import Foundation
import Testing
import VGPUAgentClient
import VGPUMigrationCore
import VGPUTestSupport

@Suite("vgpu-agent authentication, TLS and bad requests")
struct AgentSecurityTests {
    @Test("no token, a wrong token → 401; a reader reserving → 403; a reader reading → 200")
    func tokens() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b", tls: true)
        for token in [nil, "not-the-right-token-at-all"] {
            await #expect {
                try await agent.client(token: token).facts()
            } throws: { error in
                if case .authFailed(401, _) = error as? AgentClientError { return true }
                return false
            }
        }
        await #expect {
            try await agent.client(token: readerToken).reserve(request("nvidia-232"))
        } throws: { error in
            if case .authFailed(403, let message) = error as? AgentClientError {
                return message.contains("operator token")
            }
            return false
        }
        #expect(try await agent.client(token: readerToken).facts().gpus.count == 1)
        #expect(agent.mdevCount() == 0)
        // Tokens are never written to the agent's output.
        let output = (agent.process?.standardOutput ?? "") + (agent.process?.standardError ?? "")
        #expect(!output.contains(operatorToken) && !output.contains(readerToken))
    }

    @Test("TLS: the client checks the agent against the private CA")
    func serverCertificate() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b", tls: true)
        #expect(agent.baseURL.hasPrefix("https://"))
        #expect(try await agent.client().health())
        let withoutCA = AgentClient(endpoint: AgentEndpoint(baseURL: agent.baseURL, token: operatorToken))
        await #expect {
            try await withoutCA.health()
        } throws: { error in
            if case .tls = error as? AgentClientError { return true }
            return false
        }
    }

    @Test("mutual TLS: a client without a certificate, or with one from another CA, is refused")
    func mutualTLS() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b", mutualTLS: true)
        #expect(try await agent.client().facts().gpus.count == 1)
        await #expect {
            try await agent.client(clientCertificate: false).facts()
        } throws: { error in
            if case .tls = error as? AgentClientError { return true }
            return false
        }
        let certificates = try #require(agent.certificates)
        let stranger = AgentClient(
            endpoint: AgentEndpoint(
                baseURL: agent.baseURL, token: operatorToken, caFile: certificates.caCertificate,
                clientCertificate: certificates.strangerCertificate, clientKey: certificates.strangerKey))
        await #expect {
            try await stranger.facts()
        } throws: { error in
            if case .tls = error as? AgentClientError { return true }
            return false
        }
        #expect(try await agent.client().health())
    }

    @Test(
        "bad requests get a 4xx with a message, and the agent keeps serving",
        arguments: [
            ("POST", "/v1/reservations", "{not json", 400, "bad_request"),
            ("POST", "/v1/reservations", #"{"type_id":"nvidia-232"}"#, 400, "missing 'count'"),
            (
                "POST", "/v1/reservations",
                #"{"type_id":"../../../devices","count":1,"owner":"m","lease_seconds":60,"idempotency_key":"k"}"#, 400,
                "neither an mdev type id"
            ),
            (
                "POST", "/v1/reservations",
                #"{"type_id":"nvidia-999","count":1,"owner":"m","lease_seconds":60,"idempotency_key":"k"}"#, 400,
                "no GPU on this host offers vGPU type nvidia-999"
            ),
            (
                "POST", "/v1/reservations",
                #"{"type_id":"nvidia-232","count":0,"owner":"m","lease_seconds":60,"idempotency_key":"k"}"#, 400,
                "count must be"
            ),
            ("GET", "/v1/reservations/..%2F..%2Fetc", "", 400, "not a reservation id"),
            ("DELETE", "/v1/reservations/../../sys", "", 404, "no such route: DELETE /sys"),
            ("GET", "/v1/reservations/7fee245d-6682-452d-a2cd-a1d170ccfff1", "", 404, "no reservation"),
            ("POST", "/v1/reservations/not-a-uuid/commit", "", 400, "not a reservation id"),
        ])
    func badRequests(method: String, path: String, body: String, status: Int, fragment: String) async throws {
        let agent = try AgentUnderTest(fixture: "t4-b")
        let client = agent.client()
        let (answer, data) = try await client.send(method, path, body: body.isEmpty ? nil : Data(body.utf8))
        #expect(answer == status)
        #expect(String(decoding: data, as: UTF8.self).contains(fragment), "\(String(decoding: data, as: UTF8.self))")
        #expect(try await client.health())
        #expect(agent.mdevCount() == 0)
    }

    @Test("a body over the limit gets 413 and the agent keeps serving")
    func hugeBody() async throws {
        let agent = try AgentUnderTest(fixture: "t4-b", arguments: ["--max-body-bytes", "1024"])
        let client = agent.client()
        let (status, data) = try await client.send(
            "POST", "/v1/reservations", body: Data(repeating: UInt8(ascii: "a"), count: 200_000))
        #expect(status == 413)
        #expect(String(decoding: data, as: UTF8.self).contains("larger than 1024 bytes"))
        #expect(try await client.reserve(request("nvidia-232")).state == .active)
    }

    @Test("an unreachable agent is a clear error, not a hang")
    func unreachable() async throws {
        let client = AgentClient(
            endpoint: AgentEndpoint(baseURL: "http://127.0.0.1:1", token: operatorToken, retries: 1))
        await #expect {
            try await client.facts()
        } throws: { error in
            if case .refused(let message) = error as? AgentClientError { return message.contains("127.0.0.1") }
            return false
        }
    }

    @Test("the agent refuses to start with a broken token file, naming the line")
    func brokenTokenFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgpu-tokens-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokens = directory.appendingPathComponent("tokens")
        try "operator 0123456789abcdef0123\nadmin 0123456789abcdef0123\n".write(
            to: tokens, atomically: true, encoding: .utf8)
        let outcome = try ProductRunner.run(
            "vgpu-agent",
            [
                "--tokens", tokens.path, "--insecure-http", "--listen", "127.0.0.1:0", "--state-dir", directory.path,
                "--sysfs-root", TestData.fixtures.appendingPathComponent("hosts/t4-b").path, "--policies",
                TestData.policies.path,
            ])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("tokens:2: expected 'reader TOKEN' or 'operator TOKEN'"))
        #expect(!outcome.standardError.contains("0123456789abcdef0123"))
    }
}
