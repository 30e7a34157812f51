import CCurl
import Dispatch
import Foundation
import VGPUMigrationCore

/// Where an agent is and how to talk to it.
package struct AgentEndpoint: Sendable {
    /// `https://gpu-1:8443` (no trailing slash).
    package var baseURL: String
    /// Bearer token (read from the inventory's credentials file by the caller).
    package var token: String?
    /// CA that signed the agent's certificate (a private CA); nil uses the system store.
    package var caFile: String?
    /// Client certificate and key (PEM) for agents that require mutual TLS.
    package var clientCertificate: String?
    package var clientKey: String?
    package var connectTimeoutSeconds: Int
    package var timeoutSeconds: Int
    /// How many times an idempotent call is retried after a network error or a 5xx answer.
    package var retries: Int

    package init(
        baseURL: String, token: String? = nil, caFile: String? = nil, clientCertificate: String? = nil,
        clientKey: String? = nil, connectTimeoutSeconds: Int = 5, timeoutSeconds: Int = 30, retries: Int = 2
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.connectTimeoutSeconds = connectTimeoutSeconds
        self.timeoutSeconds = timeoutSeconds
        self.retries = retries
    }
}

/// Why a call to an agent failed, in the operator's words.
package enum AgentClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No route to the agent, unknown host name.
    case unreachable(String)
    /// Nothing listens at that address and port.
    case refused(String)
    /// The call took longer than the timeout.
    case timeout(String)
    /// The TLS handshake failed (unknown CA, name mismatch, client certificate refused).
    case tls(String)
    /// 401 or 403: a missing, wrong or read-only token.
    case authFailed(status: Int, message: String)
    case notFound(String)
    case noCapacity(String)
    /// Another 4xx: the agent refused the request as it stands.
    case rejected(status: Int, code: String, message: String)
    /// 5xx: the agent failed; its message says why.
    case server(status: Int, message: String)
    case invalidResponse(String)
    /// libcurl is missing or unusable on this machine: no agent can be called at all.
    case clientUnavailable(String)

    package var description: String {
        switch self {
        case .unreachable(let m): "agent unreachable: \(m)"
        case .refused(let m): "agent refused the connection: \(m)"
        case .timeout(let m): "agent did not answer in time: \(m)"
        case .tls(let m): "TLS with the agent failed: \(m)"
        case .authFailed(let status, let m): "agent refused the credentials (HTTP \(status)): \(m)"
        case .notFound(let m): "agent: \(m)"
        case .noCapacity(let m): "agent: \(m)"
        case .rejected(let status, let code, let m): "agent rejected the request (HTTP \(status), \(code)): \(m)"
        case .server(let status, let m): "agent error (HTTP \(status)): \(m)"
        case .invalidResponse(let m): "agent answered something unexpected: \(m)"
        case .clientUnavailable(let m): m
        }
    }

    /// Worth trying again for an idempotent call.
    var isTransient: Bool {
        switch self {
        case .unreachable, .refused, .timeout, .server: true
        default: false
        }
    }
}

/// The coordinator's client of `vgpu-agent`, over libcurl. Calls block in libcurl, so they run
/// on the client's own serial queue, never on Swift's cooperative pool.
package final class AgentClient: Sendable {
    package let endpoint: AgentEndpoint
    private let queue: DispatchQueue

    package init(endpoint: AgentEndpoint) {
        self.endpoint = endpoint
        self.queue = DispatchQueue(label: "vgpu-migrate.agent-client.\(endpoint.baseURL)")
    }

    package func health() async throws(AgentClientError) -> Bool {
        struct Health: Decodable { var status: String }
        return try await call("GET", "/healthz", idempotent: true, as: Health.self).status == "ok"
    }

    package func facts() async throws(AgentClientError) -> HostInventory {
        try await call("GET", "/v1/facts", idempotent: true, as: HostInventory.self)
    }

    package func vgpus() async throws(AgentClientError) -> [ExistingVGPU] {
        try await call("GET", "/v1/vgpus", idempotent: true, as: [ExistingVGPU].self)
    }

    /// Reserves vGPUs. Safe to retry: the idempotency key makes a repeat return the same reservation.
    package func reserve(_ request: ReservationRequest) async throws(AgentClientError) -> Reservation {
        let body: Data
        do {
            body = try JSONEncoder().encode(request)
        } catch {
            throw .invalidResponse("cannot encode the request: \(error)")
        }
        return try await call("POST", "/v1/reservations", body: body, idempotent: true, as: Reservation.self)
    }

    package func reservations() async throws(AgentClientError) -> [Reservation] {
        try await call("GET", "/v1/reservations", idempotent: true, as: [Reservation].self)
    }

    package func reservation(_ id: String) async throws(AgentClientError) -> Reservation {
        try await call("GET", "/v1/reservations/\(try pathID(id))", idempotent: true, as: Reservation.self)
    }

    package func release(_ id: String) async throws(AgentClientError) -> Reservation {
        try await call("DELETE", "/v1/reservations/\(try pathID(id))", idempotent: true, as: Reservation.self)
    }

    package func commit(_ id: String) async throws(AgentClientError) -> Reservation {
        try await call("POST", "/v1/reservations/\(try pathID(id))/commit", idempotent: true, as: Reservation.self)
    }

    /// The VM using a committed reservation's devices left the host: the agent removes them.
    package func retire(_ id: String) async throws(AgentClientError) -> Reservation {
        try await call("POST", "/v1/reservations/\(try pathID(id))/retire", idempotent: true, as: Reservation.self)
    }

    /// Sends a raw request; for tests of the agent's answers to malformed input.
    package func send(_ method: String, _ path: String, body: Data? = nil) async throws(AgentClientError) -> (
        status: Int, body: Data
    ) {
        try await perform(method, path, body: body)
    }

    private func pathID(_ id: String) throws(AgentClientError) -> String {
        guard let uuid = canonicalUUID(id) else {
            throw .rejected(status: 0, code: "bad_request", message: "'\(id)' is not a reservation id")
        }
        return uuid
    }

    // MARK: Transport

    private func call<T: Decodable>(
        _ method: String, _ path: String, body: Data? = nil, idempotent: Bool, as type: T.Type
    ) async throws(AgentClientError) -> T {
        var attempt = 0
        while true {
            do throws(AgentClientError) {
                let (status, data) = try await perform(method, path, body: body)
                if (200..<300).contains(status) {
                    let decoder = JSONDecoder()
                    decoder.dateDecodingStrategy = .iso8601
                    do {
                        return try decoder.decode(T.self, from: data)
                    } catch {
                        throw AgentClientError.invalidResponse("\(method) \(path): \(error)")
                    }
                }
                throw Self.error(status: status, body: data)
            } catch {
                attempt += 1
                guard idempotent, error.isTransient, attempt <= endpoint.retries else { throw error }
                try? await Task.sleep(for: .milliseconds(200 << (attempt - 1)))
            }
        }
    }

    private static func error(status: Int, body: Data) -> AgentClientError {
        let parsed = try? JSONDecoder().decode(AgentErrorBody.self, from: body)
        let message = parsed?.message ?? String(decoding: body.prefix(300), as: UTF8.self)
        switch status {
        case 401, 403: return .authFailed(status: status, message: message)
        case 404: return .notFound(message)
        case 409 where parsed?.error == "no_capacity": return .noCapacity(message)
        case 400..<500: return .rejected(status: status, code: parsed?.error ?? "http_\(status)", message: message)
        default: return .server(status: status, message: message)
        }
    }

    private func perform(_ method: String, _ path: String, body: Data?) async throws(AgentClientError) -> (Int, Data) {
        let endpoint = self.endpoint
        let result: Result<(Int, Data), AgentClientError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(
                    returning: Result { () throws(AgentClientError) in
                        try CurlRequest(endpoint: endpoint, method: method, path: path, body: body).perform()
                    })
            }
        }
        return try result.get()
    }
}

/// libcurl's one-time set-up: open the library (it is not linked, so commands that never call an
/// agent do not load it) and `curl_global_init`. nil when ready, else why not.
private enum CurlLibrary {
    static let problem: String? = {
        if let problem = vgpu_curl_load() {
            return "libcurl cannot be loaded: \(String(cString: problem)). "
                + "Install it (Debian/Ubuntu: apt install libcurl4; Fedora/RHEL: dnf install libcurl)"
        }
        let code = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        return code == CURLE_OK ? nil : "libcurl could not be initialised: \(String(cString: curl_easy_strerror(code)))"
    }()
}

/// The response body, filled by libcurl's write callback.
private final class ResponseBuffer {
    var data = Data()
    let limit = 64 << 20
}

/// One request on one `CURL *` handle, cleaned up when the value goes away.
private final class CurlRequest {
    private let handle: UnsafeMutableRawPointer
    private var headers: UnsafeMutablePointer<curl_slist>?
    private let endpoint: AgentEndpoint
    private let method: String
    private let path: String
    private let body: Data?

    init(endpoint: AgentEndpoint, method: String, path: String, body: Data?) throws(AgentClientError) {
        if let problem = CurlLibrary.problem { throw .clientUnavailable(problem) }
        guard let handle = curl_easy_init() else { throw .unreachable("libcurl could not create a request handle") }
        self.handle = handle
        self.endpoint = endpoint
        self.method = method
        self.path = path
        self.body = body
    }

    deinit {
        curl_slist_free_all(headers)
        curl_easy_cleanup(handle)
    }

    func perform() throws(AgentClientError) -> (Int, Data) {
        let url = endpoint.baseURL + path
        vgpu_curl_setopt_string(handle, CURLOPT_URL, url)
        vgpu_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        vgpu_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, endpoint.connectTimeoutSeconds)
        vgpu_curl_setopt_long(handle, CURLOPT_TIMEOUT, endpoint.timeoutSeconds)
        vgpu_curl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, 0)
        vgpu_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
        if let caFile = endpoint.caFile { vgpu_curl_setopt_string(handle, CURLOPT_CAINFO, caFile) }
        if let certificate = endpoint.clientCertificate {
            vgpu_curl_setopt_string(handle, CURLOPT_SSLCERT, certificate)
        }
        if let key = endpoint.clientKey { vgpu_curl_setopt_string(handle, CURLOPT_SSLKEY, key) }

        headers = curl_slist_append(headers, "Accept: application/json")
        if let token = endpoint.token { headers = curl_slist_append(headers, "Authorization: Bearer \(token)") }
        switch method {
        case "GET":
            vgpu_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)
        case "POST":
            let payload = body ?? Data()
            headers = curl_slist_append(headers, "Content-Type: application/json")
            vgpu_curl_setopt_long(handle, CURLOPT_POST, 1)
            vgpu_curl_setopt_long(handle, CURLOPT_POSTFIELDSIZE, payload.count)
            _ = payload.withUnsafeBytes { bytes in
                vgpu_curl_setopt_pointer(
                    handle, CURLOPT_COPYPOSTFIELDS,
                    UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
            }
        default:
            vgpu_curl_setopt_string(handle, CURLOPT_CUSTOMREQUEST, method)
        }
        vgpu_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headers))

        let buffer = ResponseBuffer()
        let context = Unmanaged.passRetained(buffer)
        defer { context.release() }
        vgpu_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context.toOpaque())
        vgpu_curl_setopt_write_function(handle) { data, size, count, context in
            guard let data, let context else { return 0 }
            let buffer = Unmanaged<ResponseBuffer>.fromOpaque(context).takeUnretainedValue()
            let length = size * count
            guard buffer.data.count + length <= buffer.limit else { return 0 }
            buffer.data.append(UnsafeRawPointer(data).assumingMemoryBound(to: UInt8.self), count: length)
            return length
        }
        var errorText = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code = errorText.withUnsafeMutableBufferPointer { pointer in
            vgpu_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, pointer.baseAddress)
            let code = curl_easy_perform(handle)
            vgpu_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, nil)
            return code
        }
        guard code == CURLE_OK else {
            let detail = String(decoding: errorText.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let message = "\(method) \(url): " + (detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail)
            switch code {
            case CURLE_COULDNT_CONNECT: throw .refused(message)
            case CURLE_OPERATION_TIMEDOUT: throw .timeout(message)
            case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: throw .unreachable(message)
            case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
                CURLE_SSL_CACERT_BADFILE, CURLE_SSL_CIPHER, CURLE_SSL_ISSUER_ERROR:
                throw .tls(message)
            case CURLE_RECV_ERROR, CURLE_SEND_ERROR:
                // A server that requires a client certificate ends the handshake with an alert the
                // client only sees when it reads.
                if detail.localizedCaseInsensitiveContains("ssl") || detail.localizedCaseInsensitiveContains("alert") {
                    throw .tls(message)
                }
                throw .unreachable(message)
            case CURLE_WRITE_ERROR: throw .invalidResponse("\(message) (answer larger than 64 MiB)")
            default: throw .unreachable(message)
            }
        }
        var status = 0
        vgpu_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return (status, buffer.data)
    }
}

extension AgentClient: HostAgent {}
