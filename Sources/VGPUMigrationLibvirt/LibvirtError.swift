import CLibvirt
import Foundation
import Synchronization

/// A failed libvirt call: libvirt's error code, domain and message.
package struct LibvirtError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `virErrorNumber` (e.g. 38 = VIR_ERR_SYSTEM_ERROR).
    package var code: Int32
    /// `virErrorDomain`: which part of libvirt reported it.
    package var domain: Int32
    package var message: String
    /// The call that failed, for context.
    package var operation: String

    package var description: String { "\(operation) failed: \(message) (libvirt error \(code), domain \(domain))" }

    /// libvirt's VIR_ERR_NO_DOMAIN.
    package static let noDomain = Int32(VIR_ERR_NO_DOMAIN.rawValue)

    /// The last error libvirt recorded on this thread. Call on the thread of the failing call,
    /// right after it.
    static func last(operation: String) -> LibvirtError {
        guard let error = virGetLastError() else {
            return LibvirtError(code: -1, domain: 0, message: "libvirt reported no error details", operation: operation)
        }
        let message = error.pointee.message.map { String(cString: $0) } ?? "no message"
        return LibvirtError(
            code: error.pointee.code, domain: error.pointee.domain, message: message, operation: operation)
    }
}

/// A string a libvirt call allocated for the caller: copied and freed here. nil means the call
/// failed, and its error is thrown (read right away, on the failing call's thread).
func takeLibvirtString(_ text: UnsafeMutablePointer<CChar>?, operation: @autoclosure () -> String)
    throws(LibvirtError) -> String
{
    guard let text else { throw LibvirtError.last(operation: operation()) }
    defer { free(text) }
    return String(cString: text)
}

/// libvirt's one-time set-up: open the client library (it is not linked, so commands that never
/// talk to a host do not load it), `virInitialize()`, and a silent default error handler (errors
/// are read with `virGetLastError()` instead of printed to stderr).
enum LibvirtLibrary {
    private static let setUp: Result<Void, LibvirtError> = {
        if let problem = vgpu_libvirt_load() {
            return .failure(
                LibvirtError(
                    code: -1, domain: 0,
                    message: "libvirt's client library cannot be loaded: \(String(cString: problem)). "
                        + "Install it (Debian/Ubuntu: apt install libvirt0; Fedora/RHEL: dnf install libvirt-libs)",
                    operation: "loading libvirt"))
        }
        virSetErrorFunc(nil) { _, _ in }
        // Before any connection: only connections opened with an event loop deliver events.
        _ = LibvirtEventLoop.running
        guard virInitialize() == 0 else { return .failure(LibvirtError.last(operation: "virInitialize")) }
        return .success(())
    }()

    private static let backgroundSetUp = Atomic<Bool>(false)

    /// Waits for a set-up started in the background to end: a process that exits while another
    /// thread is inside the library's loading crashes in the library's teardown.
    static func awaitBackgroundSetUp() {
        if backgroundSetUp.load(ordering: .relaxed) { _ = setUp }
    }

    static func ensureInitialized() throws(LibvirtError) {
        try setUp.get()
    }

    /// Starts the set-up on a thread of its own and returns at once; the first connection then
    /// finds it done or waits for the rest of it.
    static func prepareInBackground() {
        backgroundSetUp.store(true, ordering: .relaxed)
        let thread = Thread { _ = setUp }
        thread.name = "vgpu-migrate.libvirt-setup"
        thread.start()
    }
}

/// A version libvirt encodes as major * 1,000,000 + minor * 1,000 + micro.
package struct LibvirtVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    package var major: UInt64
    package var minor: UInt64
    package var micro: UInt64

    package init(encoded: UInt64) {
        major = encoded / 1_000_000
        minor = (encoded / 1_000) % 1_000
        micro = encoded % 1_000
    }

    package var description: String { "\(major).\(minor).\(micro)" }

    package static func < (lhs: LibvirtVersion, rhs: LibvirtVersion) -> Bool {
        (lhs.major, lhs.minor, lhs.micro) < (rhs.major, rhs.minor, rhs.micro)
    }
}
