import Foundation
import VGPUMigrationCore

/// Reads a file an operator gives (domain XML, YAML, a snapshot, a token file) as UTF-8 text.
package enum TextFile {
    /// The file's text; the error says whether it could not be read or is not UTF-8, and where.
    package static func read(_ path: String) throws(TextFileError) -> String {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw .unreadable(reason: error.localizedDescription)
        }
        do {
            return try UTF8Text.decode(data)
        } catch {
            throw .notUTF8(error)
        }
    }
}

/// Why ``TextFile/read(_:)`` gave no text.
package enum TextFileError: Error, Sendable, CustomStringConvertible {
    /// The operating system's reason (no such file, permission denied, a directory).
    case unreadable(reason: String)
    case notUTF8(UTF8TextError)

    package var description: String {
        switch self {
        case .unreadable(let reason): reason
        case .notUTF8(let error): error.description
        }
    }

    /// What to do, when the file's content is at fault.
    package var remedy: String? {
        if case .notUTF8(let error) = self { return error.remedy }
        return nil
    }
}

extension TextFile {
    /// Reads a policy, inventory or settings file: a failure names the file, and for a byte that
    /// is not UTF-8 its line and column, as the files' other errors do.
    package static func readPolicyFile(_ path: String, what: String = "the file") throws(PolicyFileError) -> String {
        do {
            return try read(path)
        } catch {
            switch error {
            case .unreadable(let reason):
                throw PolicyFileError(file: path, message: "cannot read \(what): \(reason)")
            case .notUTF8(let error):
                throw PolicyFileError(file: path, line: error.line, column: error.column, message: error.description)
            }
        }
    }
}
