import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import VGPUHost
import VGPUMigrationCore

/// How the agent serves.
package struct AgentServerConfiguration: Sendable {
    package var host: String
    package var port: Int
    package var tokens: AgentTokens
    /// Server certificate chain and key (PEM); nil serves plain HTTP.
    package var certificate: String?
    package var privateKey: String?
    /// CA whose client certificates are required (mutual TLS); nil accepts any client.
    package var clientCA: String?
    /// Largest request body accepted, in bytes.
    package var maxBodyBytes: Int

    package init(
        host: String, port: Int, tokens: AgentTokens, certificate: String?, privateKey: String?, clientCA: String?,
        maxBodyBytes: Int
    ) {
        self.host = host
        self.port = port
        self.tokens = tokens
        self.certificate = certificate
        self.privateKey = privateKey
        self.clientCA = clientCA
        self.maxBodyBytes = maxBodyBytes
    }
}

/// The agent's HTTP API under `/v1`, plus `/healthz` and `/metrics`.
package enum AgentServer {
    /// The agent's routes. A route throws what went wrong (``AgentError``, `ReservationError`);
    /// the error's type says its HTTP status and body.
    package static func router(
        tokens: AgentTokens, book: ReservationBook, allocator: VGPUAllocator, maxBodyBytes limit: Int
    ) -> Router<AgentRequestContext> {
        let router = Router()
        router.middlewares.add(BearerAuthMiddleware(tokens: tokens))

        router.get("/healthz") { _, _ in try json(["status": "ok"]) }
        router.get("/metrics") { _, _ in
            await metrics(book: book)
        }
        router.get("/v1/facts") { _, _ in try json(try hostFacts(allocator)) }
        router.get("/v1/vgpus") { _, _ in try json(try hostFacts(allocator).vgpus) }
        router.get("/v1/reservations") { _, _ in try json(await book.all()) }
        router.get("/v1/reservations/:id") { _, context in
            try json(try await book.reservation(try reservationID(context)))
        }
        router.post("/v1/reservations") { request, context in
            try requireOperator(context)
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: limit)
            } catch {
                throw AgentError(
                    .contentTooLarge, "payload_too_large", "the request body is larger than \(limit) bytes")
            }
            let reservationRequest: ReservationRequest
            do {
                reservationRequest = try ReservationRequest.decode(body: Data(buffer: body))
            } catch let error as ReservationRequestError {
                throw AgentError(.badRequest, "bad_request", error.message)
            }
            let (reservation, created) = try await book.reserve(reservationRequest)
            return try json(reservation, status: created ? .created : .ok)
        }
        router.delete("/v1/reservations/:id") { _, context in
            try requireOperator(context)
            return try json(try await book.release(try reservationID(context)))
        }
        router.post("/v1/reservations/:id/commit") { _, context in
            try requireOperator(context)
            return try json(try await book.commit(try reservationID(context)))
        }
        router.post("/v1/reservations/:id/retire") { _, context in
            try requireOperator(context)
            return try json(try await book.retire(try reservationID(context)))
        }
        return router
    }

    package static func application(
        configuration: AgentServerConfiguration, book: ReservationBook, allocator: VGPUAllocator, logger: Logger,
        services: [any Service] = [], onRunning: @escaping @Sendable (Int) async -> Void
    ) throws -> some ApplicationProtocol {
        let router = router(
            tokens: configuration.tokens, book: book, allocator: allocator, maxBodyBytes: configuration.maxBodyBytes)

        let server: HTTPServerBuilder
        if let certificate = configuration.certificate, let key = configuration.privateKey {
            var tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
            if let clientCA = configuration.clientCA {
                tls.certificateVerification = .noHostnameVerification
                tls.trustRoots = .file(clientCA)
            }
            server = try .tls(.http1(), tlsConfiguration: tls)
        } else {
            server = .http1()
        }
        return Application(
            router: router, server: server,
            configuration: .init(
                address: .hostname(configuration.host, port: configuration.port), serverName: "vgpu-agent"),
            services: services,
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? configuration.port) },
            logger: logger)
    }

    // MARK: Responses

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(value))))
    }

    static func failure(_ status: HTTPResponse.Status, _ code: String, _ message: String) -> Response {
        (try? json(AgentErrorBody(error: code, message: message), status: status))
            ?? Response(status: .internalServerError)
    }

    static func requireOperator(_ context: AgentRequestContext) throws(AgentError) {
        guard context.role == .operator else {
            throw AgentError(.forbidden, "forbidden", "this token may read only; reservations need an operator token")
        }
    }

    /// The `:id` parameter, which must be a reservation id (a UUID).
    static func reservationID(_ context: AgentRequestContext) throws(AgentError) -> String {
        guard let id = context.parameters.get("id").flatMap({ canonicalUUID($0) }) else {
            throw AgentError(
                .badRequest, "bad_request", "'\(context.parameters.get("id") ?? "")' is not a reservation id (a UUID)")
        }
        return id
    }

    static func hostFacts(_ allocator: VGPUAllocator) throws(AgentError) -> HostInventory {
        do {
            return try allocator.inventory()
        } catch {
            throw AgentError(.internalServerError, "internal", "cannot read the host: \(error)")
        }
    }

    /// Prometheus text format.
    static func metrics(book: ReservationBook) async -> Response {
        let reservations = await book.all()
        var text = "# HELP vgpu_agent_reservations Reservations by state.\n# TYPE vgpu_agent_reservations gauge\n"
        let states: [ReservationState] = [
            .creating, .active, .committed, .releasing, .released, .expired, .lost, .failed,
        ]
        for state in states {
            text +=
                "vgpu_agent_reservations{state=\"\(state.rawValue)\"} \(reservations.filter { $0.state == state }.count)\n"
        }
        text += "# HELP vgpu_agent_reservations_created_total Reservations created since start.\n"
        text += "# TYPE vgpu_agent_reservations_created_total counter\n"
        text += "vgpu_agent_reservations_created_total \(await book.createdTotal)\n"
        text +=
            "# HELP vgpu_agent_reservations_refused_no_capacity_total Requests refused for lack of capacity since start.\n"
        text += "# TYPE vgpu_agent_reservations_refused_no_capacity_total counter\n"
        text += "vgpu_agent_reservations_refused_no_capacity_total \(await book.refusedForCapacityTotal)\n"
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
            body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// A request the agent refuses, with its HTTP status and the documented error body.
package struct AgentError: HTTPResponseError {
    package var status: HTTPResponse.Status
    package var body: AgentErrorBody

    package init(_ status: HTTPResponse.Status, _ code: String, _ message: String) {
        self.status = status
        body = AgentErrorBody(error: code, message: message)
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        AgentServer.failure(status, body.error, body.message)
    }
}

/// The reservation book's refusals as HTTP: each case has its status and error code.
extension ReservationError: HTTPResponseError {
    package var status: HTTPResponse.Status { agentError.status }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        try agentError.response(from: request, context: context)
    }

    private var agentError: AgentError {
        switch self {
        case .badRequest(let message): AgentError(.badRequest, "bad_request", message)
        case .notFound(let message): AgentError(.notFound, "not_found", message)
        case .conflict(let message): AgentError(.conflict, "conflict", message)
        case .noCapacity(let message): AgentError(.conflict, "no_capacity", message)
        case .corruptJournal, .internal: AgentError(.internalServerError, "internal", description)
        }
    }
}

/// The request context: who is calling, as the auth middleware found.
package struct AgentRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    package var role: AgentRole = .reader

    package init(source: Source) {
        self.coreContext = .init(source: source)
    }
}

extension Router where Context == AgentRequestContext {
    convenience init() {
        self.init(context: AgentRequestContext.self)
    }
}

/// Every route but `/healthz` needs `Authorization: Bearer TOKEN`; the token's role goes into the
/// context. No token → 401, an unknown token → 401; the token is never logged.
struct BearerAuthMiddleware: RouterMiddleware {
    let tokens: AgentTokens

    func handle(
        _ request: Request, context: AgentRequestContext,
        next: (Request, AgentRequestContext) async throws -> Response
    ) async throws -> Response {
        if request.uri.path == "/healthz" { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            var response = AgentServer.failure(
                .unauthorized, "unauthorized", "an 'Authorization: Bearer TOKEN' header is required")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        guard let role = tokens.role(of: String(header.dropFirst("Bearer ".count))) else {
            var response = AgentServer.failure(.unauthorized, "unauthorized", "the bearer token is not valid")
            response.headers[.wwwAuthenticate] = "Bearer error=\"invalid_token\""
            return response
        }
        var context = context
        context.role = role
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            return AgentServer.failure(.notFound, "not_found", "no such route: \(request.method) \(request.uri.path)")
        }
    }
}
