/// A command that cannot do its job: what went wrong, what to do, and the exit code.
///
/// Exit codes: 1 the operation failed (or the verdict is negative), 2 usage or
/// configuration error, 3 a host could not be reached.
package struct CommandFailure: Error, CustomStringConvertible {
    package var message: String
    package var remedy: String?
    package var exitCode: Int32

    package init(_ message: String, remedy: String? = nil, exitCode: Int32 = 1) {
        self.message = message
        self.remedy = remedy
        self.exitCode = exitCode
    }

    package static let failed: Int32 = 1
    package static let usageOrConfiguration: Int32 = 2
    package static let unreachable: Int32 = 3

    package var description: String {
        remedy.map { "\(message)\n  hint: \($0)" } ?? message
    }
}
