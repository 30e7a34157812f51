/// Why the engine could not do what it was asked: what failed, the error underneath, and what
/// the operator can do. A command-line tool maps ``kind`` to its exit code; a service to its
/// status.
package struct MigrationEngineError: Error, CustomStringConvertible {
    /// What kind of failure this is, for whoever decides what it means to its caller.
    package enum Kind: Sendable, Hashable {
        /// The migration (or its settling) failed; the operator can read why.
        case failed
        /// The request or the inventory is wrong: a host without a way to reach it, a bad name.
        case configuration
        /// A host, its libvirt daemon or its agent did not answer.
        case unreachable
        /// The history store refused or failed.
        case historyStore
    }

    package var kind: Kind
    /// What failed, in the operator's words.
    package var message: String
    /// What to do about it, when something can be done.
    package var remedy: String?
    /// The error underneath, kept for logs and for callers that look at it.
    package var cause: (any Error)?

    package init(_ kind: Kind, _ message: String, remedy: String? = nil, cause: (any Error)? = nil) {
        self.kind = kind
        self.message = message
        self.remedy = remedy
        self.cause = cause
    }

    package var description: String {
        remedy.map { "\(message)\n  hint: \($0)" } ?? message
    }
}
