import Foundation

/// Writes files so that a process killed at any instant leaves either the old content or the
/// new, never a mix or an empty file: the bytes go to a temporary file in the same directory,
/// are flushed with fsync, and the temporary file is renamed over the old one.
package enum AtomicFile {
    /// What temporary names carry; a tree left by a killed process is cleaned of them.
    static let temporaryMarker = ".vgpu-tmp"

    /// Whether `name` is a temporary file (or directory) left by a write that did not finish.
    package static func isTemporary(_ name: String) -> Bool {
        name.hasPrefix(".") && name.contains(temporaryMarker)
    }

    /// The temporary name for `url`, in its directory.
    static func temporaryURL(for url: URL) -> URL {
        url.deletingLastPathComponent().appendingPathComponent(
            ".\(url.lastPathComponent)\(temporaryMarker).\(getpid())")
    }

    /// Replaces `url` with `bytes`. `durable` also flushes the directory, so the rename itself
    /// survives a power loss (the reservation journal); the file keeps its permissions.
    package static func replace(_ url: URL, with bytes: some Collection<UInt8>, durable: Bool = false)
        throws(AtomicFileError)
    {
        let temporary = temporaryURL(for: url)
        var status = stat()
        let mode = stat(url.path, &status) == 0 ? status.st_mode & 0o7777 : 0o644
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw AtomicFileError(path: temporary.path, step: "create", errno: errno) }
        var failure: AtomicFileError?
        let buffer = Array(bytes)
        var written = 0
        while written < buffer.count, failure == nil {
            let count = buffer.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno != EINTR {
                failure = AtomicFileError(path: temporary.path, step: "write", errno: errno)
            }
            if count > 0 { written += count }
        }
        if failure == nil && fsync(descriptor) != 0 {
            failure = AtomicFileError(path: temporary.path, step: "fsync", errno: errno)
        }
        close(descriptor)
        if failure == nil && rename(temporary.path, url.path) != 0 {
            failure = AtomicFileError(path: url.path, step: "rename", errno: errno)
        }
        if let failure {
            unlink(temporary.path)
            throw failure
        }
        if durable { syncDirectory(of: url) }
    }

    /// Flushes the directory entry of `url` (after a rename or an unlink).
    static func syncDirectory(of url: URL) {
        let directory = open(url.deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directory >= 0 else { return }
        fsync(directory)
        close(directory)
    }
}

/// A file that could not be replaced: the path, the step and the system's reason.
package struct AtomicFileError: Error, Sendable, CustomStringConvertible {
    var path: String
    var step: String
    var code: Int32

    init(path: String, step: String, errno code: Int32) {
        self.path = path
        self.step = step
        self.code = code
    }

    package var description: String { "\(path): \(step) failed: \(String(cString: strerror(code)))" }
}
