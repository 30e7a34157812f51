import struct Foundation.Data
import struct Foundation.Date
import class Foundation.JSONDecoder

/// A request to reserve vGPUs on a host for a migration.
package struct ReservationRequest: Sendable, Hashable, Codable {
    /// The vGPU type: an mdev type id (`nvidia-232`) or a vendor-VF type number (`1152`).
    package var typeID: String
    package var count: Int
    /// The migration that owns the reservation.
    package var owner: String
    /// Seconds until the reservation releases itself unless committed.
    package var leaseSeconds: Int
    /// Retrying a request with the same key returns the same reservation.
    package var idempotencyKey: String
    /// Devices to use first, GPUs (or mdev parents) or their VFs: where a drain's plan booked
    /// the vGPUs. The agent takes them when they can still hold the type and otherwise chooses
    /// as it always does; empty leaves the choice to the agent.
    package var prefer: [DeviceAddress]

    package init(
        typeID: String, count: Int, owner: String, leaseSeconds: Int, idempotencyKey: String,
        prefer: [DeviceAddress] = []
    ) {
        self.typeID = typeID
        self.count = count
        self.owner = owner
        self.leaseSeconds = leaseSeconds
        self.idempotencyKey = idempotencyKey
        self.prefer = prefer
    }

    enum CodingKeys: String, CodingKey {
        case typeID = "type_id"
        case count, owner
        case leaseSeconds = "lease_seconds"
        case idempotencyKey = "idempotency_key"
        case prefer
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        typeID = try container.decode(String.self, forKey: .typeID)
        count = try container.decode(Int.self, forKey: .count)
        owner = try container.decode(String.self, forKey: .owner)
        leaseSeconds = try container.decode(Int.self, forKey: .leaseSeconds)
        idempotencyKey = try container.decode(String.self, forKey: .idempotencyKey)
        prefer = try container.decodeIfPresent([DeviceAddress].self, forKey: .prefer) ?? []
    }

    /// `prefer` is written only when it names devices, so a request without one reads as before.
    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(typeID, forKey: .typeID)
        try container.encode(count, forKey: .count)
        try container.encode(owner, forKey: .owner)
        try container.encode(leaseSeconds, forKey: .leaseSeconds)
        try container.encode(idempotencyKey, forKey: .idempotencyKey)
        if !prefer.isEmpty { try container.encode(prefer, forKey: .prefer) }
    }

    /// Why the request cannot be taken, or nil. Checked before anything touches sysfs.
    package var problem: String? {
        if !isSafeTypeID(typeID) { return "type_id '\(typeID)' is neither an mdev type id nor a vGPU type number" }
        if !(1...64).contains(count) { return "count must be between 1 and 64" }
        if owner.isEmpty || owner.count > 128 || !owner.allSatisfy({ $0.isASCII && !$0.isWhitespace }) {
            return "owner must be 1 to 128 printable characters without spaces"
        }
        if !(1...86_400).contains(leaseSeconds) { return "lease_seconds must be between 1 and 86400" }
        if idempotencyKey.isEmpty || idempotencyKey.count > 128
            || !idempotencyKey.allSatisfy({ $0.isASCII && !$0.isWhitespace })
        {
            return "idempotency_key must be 1 to 128 printable characters without spaces"
        }
        if prefer.count > 64 { return "prefer names at most 64 devices" }
        return nil
    }
}

extension ReservationRequest {
    /// Reads the body of `POST /v1/reservations` as the agent receives it: a JSON object with
    /// the request's keys, then the request's own checks (``problem``).
    package static func decode(body: Data) throws(ReservationRequestError) -> ReservationRequest {
        let request: ReservationRequest
        do {
            request = try JSONDecoder().decode(ReservationRequest.self, from: body)
        } catch {
            throw ReservationRequestError(
                message: "the body is not a reservation request: \(describeDecodingFailure(error))")
        }
        if let problem = request.problem { throw ReservationRequestError(message: problem) }
        return request
    }
}

/// A reservation request body that cannot be taken, and why.
package struct ReservationRequestError: Error, Sendable, Hashable {
    package var message: String
}

/// An mdev type id (`nvidia-232`, letters, digits, `-`, `_`) or a decimal vGPU type number;
/// never anything that could walk out of a sysfs directory.
package func isSafeTypeID(_ text: String) -> Bool {
    guard !text.isEmpty, text.count <= 64, text != ".", text != ".." else { return false }
    return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
}

/// Where a reservation is in its life.
package enum ReservationState: String, Sendable, Hashable, Codable {
    /// Recorded; devices being created.
    case creating
    /// Devices exist and are held for the owner until the lease ends.
    case active
    /// The migration succeeded: the devices stay, the lease no longer applies.
    case committed
    /// Released by its owner while a process still holds a device open (a QEMU that a libvirt
    /// daemon left behind): the agent removes the devices as soon as they are free.
    case releasing
    /// Released by the owner: devices removed.
    case released
    /// The lease ran out: devices removed.
    case expired
    /// A device of the reservation vanished from the host.
    case lost
    /// Devices could not be created; whatever was created is removed.
    case failed

    /// No further change can happen.
    package var isFinal: Bool { self != .creating && self != .active && self != .releasing }
}

/// A device created for a reservation.
package struct ReservedDevice: Sendable, Hashable, Codable {
    /// The mdev UUID, or the VF address.
    package var id: String
    package var interface: VGPUInterface
    package var typeID: String
    /// The mdev parent or the VF.
    package var function: DeviceAddress
    /// The physical GPU (for an mdev parent of another kind, the parent).
    package var gpu: DeviceAddress

    package init(id: String, interface: VGPUInterface, typeID: String, function: DeviceAddress, gpu: DeviceAddress) {
        self.id = id
        self.interface = interface
        self.typeID = typeID
        self.function = function
        self.gpu = gpu
    }

    enum CodingKeys: String, CodingKey {
        case id, interface
        case typeID = "type_id"
        case function, gpu
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let interface = try container.decode(VGPUInterface.self, forKey: .interface)
        self.init(
            id: try container.decode(String.self, forKey: .id), interface: interface,
            typeID: try container.decode(String.self, forKey: .typeID),
            function: try container.decodeFunction(.function, of: interface),
            gpu: try container.decode(DeviceAddress.self, forKey: .gpu))
    }

    /// How the guest's `<hostdev>` refers to this device on the destination.
    package var hostdevSource: HostdevSource {
        switch interface {
        case .mdev: .mdev(uuid: id)
        case .vendorVFIO:
            // A vendor-specific vGPU is its VF, always a PCI function.
            if let address = function.pciAddress { .pci(address) } else { .mdev(uuid: id) }
        }
    }
}

/// A reservation of vGPUs on one host.
package struct Reservation: Sendable, Hashable, Codable {
    package var id: String
    package var request: ReservationRequest
    package var state: ReservationState
    package var devices: [ReservedDevice]
    package var createdAt: Date
    package var updatedAt: Date
    /// When an active reservation releases itself.
    package var leaseExpiresAt: Date
    /// Why it ended as it did (failed, lost, expired).
    package var reason: String?

    package init(
        id: String, request: ReservationRequest, state: ReservationState, devices: [ReservedDevice], createdAt: Date,
        updatedAt: Date, leaseExpiresAt: Date, reason: String? = nil
    ) {
        self.id = id
        self.request = request
        self.state = state
        self.devices = devices
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.leaseExpiresAt = leaseExpiresAt
        self.reason = reason
    }

    enum CodingKeys: String, CodingKey {
        case id, request, state, devices
        case createdAt = "created_at"
        case updatedAt = "updated_at"
        case leaseExpiresAt = "lease_expires_at"
        case reason
    }
}

/// The body of every error the agent answers with.
package struct AgentErrorBody: Sendable, Hashable, Codable {
    /// A stable code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `no_capacity`,
    /// `conflict`, `payload_too_large`, `internal`.
    package var error: String
    package var message: String

    package init(error: String, message: String) {
        self.error = error
        self.message = message
    }
}

extension Reservation {
    /// Whether this reservation still holds (active or committed) one of the devices a guest's
    /// `<hostdev>`s name.
    package func holds(any sources: Set<HostdevSource>) -> Bool {
        (state == .active || state == .committed) && devices.contains { sources.contains($0.hostdevSource) }
    }
}
