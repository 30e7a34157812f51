/// Access to a host's sysfs and procfs, rooted at some directory.
///
/// Paths are relative to the root (`sys/class/mdev_bus`), so a captured tree can be read
/// like a live host. Implementations: a real directory tree (`VGPUHost.DirectorySysfs`), and
/// for tests an emulator that follows the kernel's semantics.
package protocol SysfsIO: Sendable {
    /// Where the tree is, for messages (`/` on a live host).
    var rootDescription: String { get }
    /// The contents of a file; nil when it does not exist.
    func readFile(_ path: String) throws(SysfsError) -> String?
    /// Names in a directory (following a symbolic link to it), sorted; nil when it does not exist.
    func listDirectory(_ path: String) throws(SysfsError) -> [String]?
    /// The target of a symbolic link as written; nil when `path` is not a symbolic link.
    func readLink(_ path: String) throws(SysfsError) -> String?
    /// Writes `value` to an attribute file, as `echo value > path` does; the kernel (or the
    /// emulator) acts on it: `create` makes an mdev, `remove` removes it, `current_vgpu_type`
    /// sets a vendor VF's vGPU. A refused write is a ``SysfsError`` with the errno text.
    func writeFile(_ path: String, _ value: String) throws(SysfsError)
}

/// A sysfs read or write that failed for a reason other than absence.
package struct SysfsError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The full path as the operator would look for it.
    package var path: String
    package var message: String

    package init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    package var description: String { "\(path): \(message)" }
}
