import CLibvirt
import Foundation
import VGPUMigrationCore

/// libvirt's default event loop, run on a thread of its own. It is registered before the first
/// connection is opened: a connection only delivers events when a loop was there when it opened.
enum LibvirtEventLoop {
    static let running: Bool = {
        guard virEventRegisterDefaultImpl() == 0 else { return false }
        let thread = Thread {
            while true {
                if virEventRunDefaultImpl() < 0 { usleep(100_000) }
            }
        }
        thread.name = "vgpu-migrate.libvirt-events"
        thread.start()
        return true
    }()
}

/// Where the C callbacks put the events; owned by libvirt (released by its free callback).
private final class MigrationEventSink: Sendable {
    let continuation: AsyncStream<MigrationEvent>.Continuation

    init(_ continuation: AsyncStream<MigrationEvent>.Continuation) {
        self.continuation = continuation
    }
}

private let iterationCallback:
    @convention(c) (OpaquePointer?, OpaquePointer?, Int32, UnsafeMutableRawPointer?) -> Void = {
        _, _, iteration, opaque in
        guard let opaque else { return }
        Unmanaged<MigrationEventSink>.fromOpaque(opaque).takeUnretainedValue().continuation.yield(
            .iteration(Int(iteration)))
    }

private let jobCompletedCallback:
    @convention(c) (OpaquePointer?, OpaquePointer?, virTypedParameterPtr?, Int32, UnsafeMutableRawPointer?) -> Void = {
        _, _, params, count, opaque in
        guard let opaque else { return }
        let stats = DomainJobStats(type: Int32(VIR_DOMAIN_JOB_COMPLETED.rawValue), params: params, count: count)
        Unmanaged<MigrationEventSink>.fromOpaque(opaque).takeUnretainedValue().continuation.yield(
            .jobCompleted(stats))
    }

private let releaseSink: @convention(c) (UnsafeMutableRawPointer?) -> Void = { opaque in
    guard let opaque else { return }
    Unmanaged<MigrationEventSink>.fromOpaque(opaque).release()
}

extension LibvirtDomain {
    /// Subscribes to this domain's migration events: a new pass over memory, the job's end.
    package func migrationEvents() async throws -> MigrationEventStream {
        let (events, continuation) = AsyncStream.makeStream(of: MigrationEvent.self, bufferingPolicy: .unbounded)
        let domain = handle
        let name = self.name
        let ids = try await connection.call { (pointer) throws(LibvirtError) -> [Int32] in
            guard LibvirtEventLoop.running else {
                throw LibvirtError.last(operation: "virEventRegisterDefaultImpl")
            }
            var ids: [Int32] = []
            let registrations: [(Int32, virConnectDomainEventGenericCallback)] = [
                (
                    Int32(VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION.rawValue),
                    unsafeBitCast(iterationCallback, to: virConnectDomainEventGenericCallback.self)
                ),
                (
                    Int32(VIR_DOMAIN_EVENT_ID_JOB_COMPLETED.rawValue),
                    unsafeBitCast(jobCompletedCallback, to: virConnectDomainEventGenericCallback.self)
                ),
            ]
            for (event, callback) in registrations {
                let sink = Unmanaged.passRetained(MigrationEventSink(continuation)).toOpaque()
                let id = virConnectDomainEventRegisterAny(pointer, domain.value, event, callback, sink, releaseSink)
                guard id >= 0 else {
                    Unmanaged<MigrationEventSink>.fromOpaque(sink).release()
                    let error = LibvirtError.last(operation: "registering migration events of \(name)")
                    for registered in ids { virConnectDomainEventDeregisterAny(pointer, registered) }
                    throw error
                }
                ids.append(id)
            }
            return ids
        }
        let connection = self.connection
        return MigrationEventStream(events: events) {
            _ = try? await connection.call { (pointer) throws(LibvirtError) in
                for id in ids { virConnectDomainEventDeregisterAny(pointer, id) }
            }
            continuation.finish()
        }
    }
}
