import CLibvirt
import Dispatch
import Foundation
import VGPUMigrationCore

extension MigrationFlags {
    /// The same flags as libvirt's `virDomainMigrateFlags` bits.
    var libvirtFlags: UInt32 {
        let bits: [(MigrationFlags, UInt32)] = [
            (.live, VIR_MIGRATE_LIVE.rawValue), (.peerToPeer, VIR_MIGRATE_PEER2PEER.rawValue),
            (.persistDestination, VIR_MIGRATE_PERSIST_DEST.rawValue),
            (.undefineSource, VIR_MIGRATE_UNDEFINE_SOURCE.rawValue), (.postCopy, VIR_MIGRATE_POSTCOPY.rawValue),
            (.parallel, VIR_MIGRATE_PARALLEL.rawValue),
        ]
        return bits.reduce(0) { contains($1.0) ? $0 | $1.1 : $0 }
    }
}

extension DomainJobStats {
    /// Reads the typed parameters of `virDomainGetJobStats` or of a job-completed event.
    init(type: Int32, params: virTypedParameterPtr?, count: Int32) {
        func number(_ field: String) -> UInt64? {
            var value: UInt64 = 0
            return virTypedParamsGetULLong(params, count, field, &value) == 1 ? value : nil
        }
        var operation: Int32 = 0
        let hasOperation = virTypedParamsGetInt(params, count, "operation", &operation) == 1
        var message: UnsafePointer<CChar>?
        let hasMessage = virTypedParamsGetString(params, count, "errmsg", &message) == 1
        self.init(
            type: type, operation: hasOperation ? operation : nil,
            timeElapsedMilliseconds: number("time_elapsed"), dataTotalBytes: number("data_total"),
            dataProcessedBytes: number("data_processed"), dataRemainingBytes: number("data_remaining"),
            memoryTotalBytes: number("memory_total"), memoryProcessedBytes: number("memory_processed"),
            memoryRemainingBytes: number("memory_remaining"), memoryBytesPerSecond: number("memory_bps"),
            memoryDirtyRatePagesPerSecond: number("memory_dirty_rate"), memoryIteration: number("memory_iteration"),
            memoryPageSize: number("memory_page_size"), downtimeMilliseconds: number("downtime"),
            setupTimeMilliseconds: number("setup_time"), vfioDataTransferredBytes: number("vfio_data_transferred"),
            errorMessage: hasMessage ? message.map { String(cString: $0) } : nil)
    }
}

/// A domain handle (`virDomainPtr`), freed when the value goes away. Calls go through the
/// connection's queue, except the migration itself, which blocks for as long as it runs and so
/// gets a thread of its own (libvirt allows calls on one domain from several threads).
package final class LibvirtDomain: @unchecked Sendable {
    private let pointer: OpaquePointer
    package let connection: LibvirtConnection
    package let name: String
    /// The connection for the migration call, when `prepareMigration` opened it ahead.
    let migrationLine = PreparedMigrationLine()

    init(pointer: OpaquePointer, connection: LibvirtConnection, name: String) {
        self.pointer = pointer
        self.connection = connection
        self.name = name
    }

    deinit {
        virDomainFree(pointer)
    }

    var handle: UnsafeSendable<OpaquePointer> { UnsafeSendable(pointer) }

    /// The domain XML; `migratable` gives the form libvirt accepts as `destination_xml`.
    package func xml(migratable: Bool = false) async throws -> String {
        let domain = handle
        let name = self.name
        return try await connection.call { (_) throws(LibvirtError) in
            let flags = migratable ? VIR_DOMAIN_XML_MIGRATABLE.rawValue : 0
            return try takeLibvirtString(
                virDomainGetXMLDesc(domain.value, flags), operation: "virDomainGetXMLDesc(\(name))")
        }
    }

    /// Whether the domain runs (`virDomainIsActive`).
    package func isActive() async throws -> Bool {
        let domain = handle
        let name = self.name
        return try await connection.call { (_) throws(LibvirtError) in
            let active = virDomainIsActive(domain.value)
            guard active >= 0 else { throw LibvirtError.last(operation: "virDomainIsActive(\(name))") }
            return active == 1
        }
    }

    /// The current job's statistics, or with `completed` those of the last completed job. The
    /// completed job's statistics stay with the domain for others to read (`virsh domjobinfo
    /// --completed`), rather than being discarded by this read as libvirt does by default.
    package func jobStats(completed: Bool = false) async throws -> DomainJobStats {
        let domain = handle
        let name = self.name
        return try await connection.call { (_) throws(LibvirtError) in
            var type: Int32 = 0
            var params: virTypedParameterPtr?
            var count: Int32 = 0
            let flags =
                completed
                ? VIR_DOMAIN_JOB_STATS_COMPLETED.rawValue | VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED.rawValue : 0
            guard virDomainGetJobStats(domain.value, &type, &params, &count, flags) == 0 else {
                throw LibvirtError.last(operation: "virDomainGetJobStats(\(name))")
            }
            defer { virTypedParamsFree(params, count) }
            return DomainJobStats(type: type, params: params, count: count)
        }
    }

    /// Sets the most downtime the running migration may cause (`virDomainMigrateSetMaxDowntime`).
    package func setMaxDowntime(milliseconds: UInt64) async throws {
        let domain = handle
        let name = self.name
        try await connection.call { (_) throws(LibvirtError) in
            guard virDomainMigrateSetMaxDowntime(domain.value, milliseconds, 0) == 0 else {
                throw LibvirtError.last(operation: "virDomainMigrateSetMaxDowntime(\(name), \(milliseconds) ms)")
            }
        }
    }

    /// Aborts the running job (`virDomainAbortJob`); the guest stays where it is.
    package func abortJob() async throws {
        let domain = handle
        let name = self.name
        try await connection.call { (_) throws(LibvirtError) in
            guard virDomainAbortJob(domain.value) == 0 else {
                throw LibvirtError.last(operation: "virDomainAbortJob(\(name))")
            }
        }
    }

    /// Opens, in the background, the connection `migrate` will run on (see there), so that the
    /// migration does not wait for it. Calling it again, or not at all, is harmless.
    package func prepareMigration() {
        let uri = connection.uri
        // The thread holds the domain (and so its handle) until the line is open.
        migrationLine.prepare { [self] in MigrationLine.open(uri: uri, domain: pointer, name: name) }
    }

    /// Migrates the domain to the libvirt daemon at `destinationURI` (peer-to-peer: the source
    /// daemon connects to it) and returns when the migration has ended.
    ///
    /// libvirt's remote driver serializes the calls of one connection, so the migration runs on
    /// a connection of its own (opened on its own thread, or ahead by `prepareMigration`): job
    /// statistics, new downtime limits and an abort on this domain's connection are answered
    /// while it runs.
    package func migrate(to destinationURI: String, parameters: MigrationParameters, flags: MigrationFlags) async throws
    {
        let domain = handle
        let name = self.name
        let uri = connection.uri
        let prepared = migrationLine
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread {
                // A connection opened ahead is used; one that failed is tried once more now, as
                // what failed then (a daemon restarting, say) may be over.
                let line: MigrationLine
                do {
                    if case .success(let ready)? = prepared.take() {
                        line = ready
                    } else {
                        line = try MigrationLine.open(uri: uri, domain: domain.value, name: name).get()
                    }
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                var params: virTypedParameterPtr?
                var count: Int32 = 0
                var capacity: Int32 = 0
                defer { virTypedParamsFree(params, count) }
                func add(_ field: String, _ value: String?) {
                    if let value { virTypedParamsAddString(&params, &count, &capacity, field, value) }
                }
                add("destination_xml", parameters.destinationXML)
                add("persistent_xml", parameters.persistentXML)
                add("migrate_uri", parameters.migrateURI)
                add("listen_address", parameters.listenAddress)
                if let bandwidth = parameters.bandwidthMiBPerSecond {
                    virTypedParamsAddULLong(&params, &count, &capacity, "bandwidth", bandwidth)
                }
                if let connections = parameters.parallelConnections {
                    virTypedParamsAddInt(&params, &count, &capacity, "parallel.connections", connections)
                }
                if virDomainMigrateToURI3(line.domain, destinationURI, params, UInt32(count), flags.libvirtFlags) == 0 {
                    continuation.resume()
                } else {
                    continuation.resume(
                        throwing: LibvirtError.last(operation: "migrating \(name) to \(destinationURI)"))
                }
            }
            thread.name = "vgpu-migrate.migrate.\(name)"
            thread.start()
        }
    }
}

/// The connection a migration runs on and the domain looked up on it; the domain is freed and
/// the connection closed when the value goes away.
final class MigrationLine: @unchecked Sendable {
    let connection: OpaquePointer
    let domain: OpaquePointer

    private init(connection: OpaquePointer, domain: OpaquePointer) {
        self.connection = connection
        self.domain = domain
    }

    deinit {
        virDomainFree(domain)
        virConnectClose(connection)
    }

    /// Opens a connection to `uri` and looks `domain` up on it by UUID (blocking).
    static func open(uri: String, domain: OpaquePointer, name: String) -> Result<MigrationLine, LibvirtError> {
        guard let connection = virConnectOpen(uri) else {
            return .failure(LibvirtError.last(operation: "connecting to \(uri) to migrate \(name)"))
        }
        var uuid = [CChar](repeating: 0, count: Int(VIR_UUID_STRING_BUFLEN))
        guard virDomainGetUUIDString(domain, &uuid) == 0, let found = virDomainLookupByUUIDString(connection, uuid)
        else {
            let error = LibvirtError.last(operation: "looking up \(name) to migrate it")
            virConnectClose(connection)
            return .failure(error)
        }
        return .success(MigrationLine(connection: connection, domain: found))
    }
}

/// A `MigrationLine` being opened ahead on a thread of its own, handed to the migration once.
final class PreparedMigrationLine: @unchecked Sendable {
    private let condition = NSCondition()
    private var started = false
    private var result: Result<MigrationLine, LibvirtError>?

    /// Starts `open` on a new thread, unless it was started before.
    func prepare(_ open: @escaping @Sendable () -> Result<MigrationLine, LibvirtError>) {
        condition.lock()
        defer { condition.unlock() }
        guard !started else { return }
        started = true
        let thread = Thread { [self] in
            let opened = open()
            condition.lock()
            result = opened
            condition.broadcast()
            condition.unlock()
        }
        thread.name = "vgpu-migrate.migration-connection"
        thread.start()
    }

    /// Whether the line being prepared opened (waiting for it to be tried); nil when none is
    /// prepared. Leaves it for `take`. Blocks.
    func opened() -> Bool? {
        condition.lock()
        defer { condition.unlock() }
        guard let result = settled() else { return nil }
        if case .success = result { return true }
        return false
    }

    /// The prepared line (waiting for it while it opens), or nil when none was prepared or it
    /// was taken already. Blocks: call it off the cooperative pool.
    func take() -> Result<MigrationLine, LibvirtError>? {
        condition.lock()
        defer { condition.unlock() }
        guard let taken = settled() else { return nil }
        result = nil
        started = false
        return taken
    }

    /// The outcome of the line being prepared, once it is tried; nil when none is. Call with
    /// the lock held.
    private func settled() -> Result<MigrationLine, LibvirtError>? {
        guard started else { return nil }
        while result == nil { condition.wait() }
        return result
    }
}

extension LibvirtConnection {
    /// The domain called `name`, or nil when there is none.
    package func lookupDomain(_ name: String) async throws -> LibvirtDomain? {
        let pointer = try await call { (connection) throws(LibvirtError) -> UnsafeSendable<OpaquePointer>? in
            guard let domain = virDomainLookupByName(connection, name) else {
                let error = LibvirtError.last(operation: "virDomainLookupByName(\(name))")
                if error.code == LibvirtError.noDomain { return nil }
                throw error
            }
            return UnsafeSendable(domain)
        }
        return pointer.map { LibvirtDomain(pointer: $0.value, connection: self, name: name) }
    }
}
