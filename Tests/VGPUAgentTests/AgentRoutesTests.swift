import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
import VGPUHost
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUAgent

/// The agent's HTTP routes in process (Hummingbird's router test client, no socket): each error
/// type answers with its status and the documented body. The process tests (AgentSecurityTests,
/// AgentReservationTests) still run the real binary over TLS.
@Suite("vgpu-agent routes in process: statuses and error bodies by error type")
struct AgentRoutesTests {
    /// A T4 host (fixture `t4-b`, one free T4 with a `nvidia-232` limit of 4) behind the routes.
    final class Host: Sendable {
        let directory: URL
        let book: ReservationBook
        let application: Application<RouterResponder<AgentRequestContext>>

        init(maxInstances: [String: Int] = [:]) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "vgpu-routes-\(UUID().uuidString)")
            let tree = directory.appendingPathComponent("tree")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: TestData.fixtures.appendingPathComponent("hosts/t4-b"), to: tree)
            let catalog = try GPUBoardCatalogFile.parse(
                try TestData.text(TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)),
                file: "boards")
            let allocator = VGPUAllocator(
                sysfs: try SysfsEmulator(root: tree.path, catalog: catalog), catalog: catalog,
                maxInstances: maxInstances)
            book = try ReservationBook(
                allocator: allocator, stateDirectory: directory.appendingPathComponent("state"))
            let router = AgentServer.router(
                tokens: AgentTokens(entries: [(.operator, operatorToken), (.reader, readerToken)]), book: book,
                allocator: allocator, maxBodyBytes: 4096)
            application = Application(router: router)
        }

        deinit { try? FileManager.default.removeItem(at: directory) }
    }

    static func headers(_ token: String) -> HTTPFields {
        [.authorization: "Bearer \(token)", .contentType: "application/json"]
    }

    static func body(typeID: String = "nvidia-232", count: Int = 1, key: String = "m-1/reserve") -> ByteBuffer {
        ByteBuffer(
            string: """
                {"type_id": "\(typeID)", "count": \(count), "owner": "m-1", "lease_seconds": 600, "idempotency_key": "\(key)"}
                """)
    }

    static func error(_ response: TestResponse) throws -> AgentErrorBody {
        try JSONDecoder().decode(AgentErrorBody.self, from: Data(buffer: response.body))
    }

    static func reservation(_ response: TestResponse) throws -> Reservation {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Reservation.self, from: Data(buffer: response.body))
    }

    @Test("reserve 201, the same key again 200 with the same reservation; commit; release of it 409 conflict")
    func reserveCommitRelease() async throws {
        let host = try Host()
        try await host.application.test(.router) { client in
            let first = try await client.execute(
                uri: "/v1/reservations", method: .post, headers: Self.headers(operatorToken), body: Self.body())
            #expect(first.status == .created)
            let made = try Self.reservation(first)
            #expect(made.state == .active && made.devices.count == 1)
            let again = try await client.execute(
                uri: "/v1/reservations", method: .post, headers: Self.headers(operatorToken), body: Self.body())
            #expect(again.status == .ok)
            #expect(try Self.reservation(again).id == made.id)
            let committed = try await client.execute(
                uri: "/v1/reservations/\(made.id)/commit", method: .post, headers: Self.headers(operatorToken))
            #expect(committed.status == .ok)
            #expect(try Self.reservation(committed).state == .committed)
            let released = try await client.execute(
                uri: "/v1/reservations/\(made.id)", method: .delete, headers: Self.headers(operatorToken))
            #expect(released.status == .conflict)
            #expect(try Self.error(released).error == "conflict")
        }
    }

    @Test(
        "each refusal has its status and code: 400 (a device to prefer that is no device among them), 401, 403, 404, 409 no_capacity, 413"
    )
    func refusals() async throws {
        let host = try Host(maxInstances: ["nvidia-232": 1])
        try await host.application.test(.router) { client in
            let unknown = "3f9c1a2b-0000-4000-8000-000000000001"
            let cases: [(String, HTTPRequest.Method, HTTPFields, ByteBuffer?, HTTPResponse.Status, String)] = [
                ("/v1/reservations/not-a-uuid", .get, Self.headers(readerToken), nil, .badRequest, "bad_request"),
                (
                    "/v1/reservations", .post, Self.headers(operatorToken), ByteBuffer(string: "{"), .badRequest,
                    "bad_request"
                ),
                ("/v1/reservations", .get, [:], nil, .unauthorized, "unauthorized"),
                ("/v1/reservations", .get, Self.headers("not-a-token"), nil, .unauthorized, "unauthorized"),
                ("/v1/reservations", .post, Self.headers(readerToken), Self.body(), .forbidden, "forbidden"),
                ("/v1/reservations/\(unknown)", .get, Self.headers(readerToken), nil, .notFound, "not_found"),
                ("/v1/reservations/\(unknown)/commit", .post, Self.headers(operatorToken), nil, .notFound, "not_found"),
                ("/v1/no-such-route", .get, Self.headers(readerToken), nil, .notFound, "not_found"),
                ("/v1/reservations", .post, Self.headers(operatorToken), Self.body(count: 2), .conflict, "no_capacity"),
                (
                    "/v1/reservations", .post, Self.headers(operatorToken),
                    ByteBuffer(
                        string: """
                            {"type_id": "nvidia-232", "count": 1, "owner": "m-1", "lease_seconds": 600, \
                            "idempotency_key": "m-2/reserve", "prefer": ["../../power"]}
                            """), .badRequest, "bad_request"
                ),
                (
                    "/v1/reservations", .post, Self.headers(operatorToken),
                    ByteBuffer(string: String(repeating: " ", count: 5000)), .contentTooLarge, "payload_too_large"
                ),
            ]
            for (uri, method, headers, body, status, code) in cases {
                let response = try await client.execute(uri: uri, method: method, headers: headers, body: body)
                #expect(response.status == status, "\(method) \(uri)")
                #expect((try? Self.error(response).error) == code, "\(method) \(uri): \(String(buffer: response.body))")
            }
            // Nothing was made by the refused requests.
            #expect(await host.book.all().isEmpty)
        }
    }

    @Test("the reservation book runs on a queue of its own, off the cooperative thread pool")
    func bookOffThePool() async throws {
        let host = try Host()
        #expect(await host.book.runsOffTheCooperativePool)
        // The caller's task is on the pool, not on the book's queue.
        #expect(!BlockingIOExecutor(label: "other").isCurrent)
    }
}
