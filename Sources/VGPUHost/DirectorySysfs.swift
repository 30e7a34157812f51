import Foundation
import VGPUMigrationCore

/// ``SysfsIO`` over a real directory tree: `/` on a live host, or a captured tree.
package struct DirectorySysfs: SysfsIO {
    package let root: URL

    package init(root: String) {
        self.root = URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL
    }

    package var rootDescription: String { root.path }

    /// The absolute path of `relative`, for messages.
    package func absolute(_ relative: String) -> String {
        root.appendingPathComponent(relative).path
    }

    package func readFile(_ path: String) throws(SysfsError) -> String? {
        let url = root.appendingPathComponent(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue {
            throw SysfsError(path: url.path, message: "is a directory, expected a file")
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw SysfsError(path: url.path, message: "cannot be read (\(error.localizedDescription))")
        }
        do {
            return try UTF8Text.decode(data)
        } catch {
            throw SysfsError(path: url.path, message: "is not text the kernel writes: \(error)")
        }
    }

    package func listDirectory(_ path: String) throws(SysfsError) -> [String]? {
        let url = root.appendingPathComponent(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else { return nil }
        guard isDirectory.boolValue else {
            throw SysfsError(path: url.path, message: "is a file, expected a directory")
        }
        do {
            return try FileManager.default.contentsOfDirectory(atPath: url.path).sorted()
        } catch {
            throw SysfsError(path: url.path, message: "cannot be listed (\(error.localizedDescription))")
        }
    }

    package func readLink(_ path: String) throws(SysfsError) -> String? {
        let url = root.appendingPathComponent(path)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: url.path),
            attributes[.type] as? FileAttributeType == .typeSymbolicLink
        else { return nil }
        do {
            return try FileManager.default.destinationOfSymbolicLink(atPath: url.path)
        } catch {
            throw SysfsError(path: url.path, message: "symbolic link cannot be read (\(error.localizedDescription))")
        }
    }

    package func writeFile(_ path: String, _ value: String) throws(SysfsError) {
        let url = root.appendingPathComponent(path)
        // sysfs attributes take one write(2) of the whole value; no temporary file, no rename.
        let descriptor = open(url.path, O_WRONLY)
        guard descriptor >= 0 else {
            throw SysfsError(
                path: url.path, message: "cannot be opened for writing: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        let bytes = Array(value.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw SysfsError(
                path: url.path, message: "write of '\(value)' refused: \(String(cString: strerror(errno)))")
        }
    }
}
