/// A finding for the operator: how serious it is, what is wrong, and what to do about it.
package struct Diagnostic: Sendable, Hashable, Codable, CustomStringConvertible {
    package enum Severity: String, Sendable, Hashable, Codable, Comparable {
        case note, warning, error

        private var rank: Int {
            switch self {
            case .note: 0
            case .warning: 1
            case .error: 2
            }
        }

        package static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    package var severity: Severity
    /// What is wrong, in the operator's words.
    package var message: String
    /// What to do about it, if there is something to do.
    package var remedy: String?

    package init(_ severity: Severity, _ message: String, remedy: String? = nil) {
        self.severity = severity
        self.message = message
        self.remedy = remedy
    }

    package var description: String {
        var text = "\(severity.rawValue): \(message)"
        if let remedy { text += "\n  hint: \(remedy)" }
        return text
    }
}
