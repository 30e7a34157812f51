import CLibvirt
import Dispatch

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// An open libvirt connection (`virConnectPtr`), closed when the value goes away.
///
/// libvirt calls block, so every call runs on this connection's own serial queue, never on
/// Swift's cooperative thread pool; the error of a failed call is read on that same thread.
package final class LibvirtConnection: @unchecked Sendable {
    // Touched only on `queue`.
    private let pointer: OpaquePointer
    private let queue: DispatchQueue
    /// The URI the connection was opened with.
    package let uri: String

    private init(pointer: OpaquePointer, queue: DispatchQueue, uri: String) {
        self.pointer = pointer
        self.queue = queue
        self.uri = uri
    }

    deinit {
        let pointer = self.pointer
        queue.sync { _ = virConnectClose(pointer) }
    }

    /// Loads and initializes libvirt's client library in the background, for a command that is
    /// about to connect: its other start-up work then overlaps the library's (libvirt and its
    /// fifty-odd libraries take several milliseconds to load and relocate).
    package static func loadLibraryInBackground() {
        LibvirtLibrary.prepareInBackground()
    }

    /// Waits for a load ``loadLibraryInBackground()`` started; call it before the process exits.
    package static func finishLoadingLibrary() {
        LibvirtLibrary.awaitBackgroundSetUp()
    }

    /// Opens `uri` (`qemu:///system`, `qemu+tcp://host/system`, `test:///default`, ...).
    package static func open(uri: String, readOnly: Bool = false) async throws -> LibvirtConnection {
        let queue = DispatchQueue(label: "vgpu-migrate.libvirt.\(uri)")
        return try await run(on: queue) { () throws(LibvirtError) -> LibvirtConnection in
            try LibvirtLibrary.ensureInitialized()
            let opened = readOnly ? virConnectOpenReadOnly(uri) : virConnectOpen(uri)
            guard let opened else { throw LibvirtError.last(operation: "connecting to \(uri)") }
            return LibvirtConnection(pointer: opened, queue: queue, uri: uri)
        }
    }

    /// Runs `body` with the connection pointer on the connection's queue.
    func call<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws(LibvirtError) -> T) async throws -> T {
        let pointer = UnsafeSendable(pointer)
        return try await Self.run(on: queue) { () throws(LibvirtError) -> T in try body(pointer.value) }
    }

    private static func run<T: Sendable>(
        on queue: DispatchQueue, _ body: @escaping @Sendable () throws(LibvirtError) -> T
    ) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    continuation.resume(returning: try body())
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// The libvirt library version the daemon runs (`virConnectGetLibVersion`).
    package func libraryVersion() async throws -> LibvirtVersion {
        try await version("virConnectGetLibVersion") { virConnectGetLibVersion($0, $1) }
    }

    /// The hypervisor (QEMU) version (`virConnectGetVersion`).
    package func hypervisorVersion() async throws -> LibvirtVersion {
        try await version("virConnectGetVersion") { virConnectGetVersion($0, $1) }
    }

    private func version(
        _ operation: String, _ get: @escaping @Sendable (OpaquePointer, UnsafeMutablePointer<UInt>) -> Int32
    ) async throws -> LibvirtVersion {
        try await call { (connection) throws(LibvirtError) in
            var version: UInt = 0
            guard get(connection, &version) == 0 else { throw LibvirtError.last(operation: operation) }
            return LibvirtVersion(encoded: UInt64(version))
        }
    }

    /// The host's name as libvirt reports it.
    package func hostname() async throws -> String {
        try await call { (connection) throws(LibvirtError) in
            try takeLibvirtString(virConnectGetHostname(connection), operation: "virConnectGetHostname")
        }
    }

    /// The host capabilities XML (`virConnectGetCapabilities`).
    package func capabilitiesXML() async throws -> String {
        try await call { (connection) throws(LibvirtError) in
            try takeLibvirtString(virConnectGetCapabilities(connection), operation: "virConnectGetCapabilities")
        }
    }

    /// Total host memory and the memory available to a new guest, in bytes: free + buffers +
    /// page cache (`virNodeGetMemoryStats`); where a driver has no such statistics, the kernel's
    /// free memory (`virNodeGetFreeMemory`), which leaves the page cache out.
    package func memory() async throws -> (total: UInt64, free: UInt64) {
        try await call { (connection) throws(LibvirtError) in
            var info = virNodeInfo()
            guard virNodeGetInfo(connection, &info) == 0 else { throw LibvirtError.last(operation: "virNodeGetInfo") }
            let total = UInt64(info.memory) * 1024
            let allCells = VIR_NODE_MEMORY_STATS_ALL_CELLS.rawValue
            var count: Int32 = 0
            if virNodeGetMemoryStats(connection, allCells, nil, &count, 0) == 0, count > 0 {
                var stats = [virNodeMemoryStats](repeating: virNodeMemoryStats(), count: Int(count))
                if virNodeGetMemoryStats(connection, allCells, &stats, &count, 0) == 0 {
                    var available: UInt64 = 0
                    for stat in stats.prefix(Int(count)) {
                        let field = withUnsafeBytes(of: stat.field) { bytes in
                            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
                        }
                        if ["free", "buffers", "cached"].contains(field) { available += stat.value * 1024 }
                    }
                    if available > 0 { return (total, available) }
                }
            }
            let free = virNodeGetFreeMemory(connection)
            if free == 0 { throw LibvirtError.last(operation: "virNodeGetFreeMemory") }
            return (total, UInt64(free))
        }
    }

    /// The domain called `name`: its XML and whether it runs; nil when no such domain exists.
    package func domain(named name: String) async throws -> (xml: String, active: Bool)? {
        try await call { (connection) throws(LibvirtError) in
            guard let domain = virDomainLookupByName(connection, name) else {
                let error = LibvirtError.last(operation: "virDomainLookupByName(\(name))")
                if error.code == LibvirtError.noDomain { return nil }
                throw error
            }
            defer { virDomainFree(domain) }
            let active = virDomainIsActive(domain)
            guard active >= 0 else { throw LibvirtError.last(operation: "virDomainIsActive(\(name))") }
            let xml = try takeLibvirtString(
                virDomainGetXMLDesc(domain, 0), operation: "virDomainGetXMLDesc(\(name))")
            return (xml, active == 1)
        }
    }

    /// The running domains: each one's name and XML, by name.
    package func runningDomains() async throws -> [(name: String, xml: String)] {
        try await call { (connection) throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = virConnectListAllDomains(
                connection, &list, UInt32(VIR_CONNECT_LIST_DOMAINS_ACTIVE.rawValue))
            guard count >= 0, let list else { throw LibvirtError.last(operation: "virConnectListAllDomains") }
            // Every handle is freed, also when a later call fails.
            let domains = (0..<Int(count)).compactMap { list[$0] }
            free(list)
            defer { for domain in domains { virDomainFree(domain) } }
            var result: [(name: String, xml: String)] = []
            for domain in domains {
                let name = virDomainGetName(domain).map { String(cString: $0) } ?? ""
                let xml = try takeLibvirtString(
                    virDomainGetXMLDesc(domain, 0), operation: "virDomainGetXMLDesc(\(name))")
                result.append((name, xml))
            }
            return result.sorted { $0.name < $1.name }
        }
    }

    /// Whether this host can run a guest CPU described by `cpuXML` (a domain's `<cpu>`), by
    /// `virConnectCompareHypervisorCPU`: nil when libvirt says compatible, else its reason.
    package func incompatibility(ofGuestCPU cpuXML: String, architecture: String?, virtType: String?) async throws
        -> String?
    {
        try await call { (connection) throws(LibvirtError) in
            let result = virConnectCompareHypervisorCPU(connection, nil, architecture, nil, virtType, cpuXML, 0)
            switch result {
            case Int32(VIR_CPU_COMPARE_IDENTICAL.rawValue), Int32(VIR_CPU_COMPARE_SUPERSET.rawValue):
                return nil
            case Int32(VIR_CPU_COMPARE_INCOMPATIBLE.rawValue):
                return "the host CPU lacks features the guest CPU needs"
            default:
                throw LibvirtError.last(operation: "virConnectCompareHypervisorCPU")
            }
        }
    }

    /// The XML of every node device. The test driver refuses filter flags, so all devices are
    /// listed and callers filter on the parsed capability.
    package func nodeDeviceXMLs() async throws -> [(name: String, xml: String)] {
        try await call { (connection) throws(LibvirtError) in
            var list: UnsafeMutablePointer<OpaquePointer?>?
            let count = virConnectListAllNodeDevices(connection, &list, 0)
            guard count >= 0, let list else { throw LibvirtError.last(operation: "virConnectListAllNodeDevices") }
            // Own every handle first so that each is freed, also when a later call fails.
            let devices = (0..<Int(count)).compactMap { list[$0].map(NodeDeviceHandle.init) }
            free(list)
            var result: [(name: String, xml: String)] = []
            for device in devices { result.append((device.name, try device.xml())) }
            return result
        }
    }
}

/// A `virNodeDevicePtr`, freed when the value goes away. Used only on its connection's queue.
final class NodeDeviceHandle {
    private let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }

    deinit {
        virNodeDeviceFree(pointer)
    }

    var name: String {
        virNodeDeviceGetName(pointer).map { String(cString: $0) } ?? ""
    }

    func xml() throws(LibvirtError) -> String {
        try takeLibvirtString(virNodeDeviceGetXMLDesc(pointer, 0), operation: "virNodeDeviceGetXMLDesc(\(name))")
    }
}

/// Carries a C pointer into a closure that runs on the connection's queue.
struct UnsafeSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
