import Foundation
import VGPUPolicies

/// What a bearer token may do.
package enum AgentRole: String, Sendable, Comparable {
    /// Host facts, vGPUs and reservations may be read.
    case reader
    /// Reservations may also be created, released and committed.
    case `operator`

    package static func < (lhs: AgentRole, rhs: AgentRole) -> Bool { lhs == .reader && rhs == .operator }
}

/// The agent's bearer tokens, from a file of `ROLE TOKEN` lines (`#` starts a comment).
/// Tokens are compared in constant time and never logged or echoed.
package struct AgentTokens: Sendable {
    private var entries: [(role: AgentRole, token: [UInt8])]

    package init(entries: [(AgentRole, String)]) {
        self.entries = entries.map { ($0.0, Array($0.1.utf8)) }
    }

    /// Reads a token file; errors name the file and line, never the token.
    package static func load(path: String) throws(AgentTokenFileError) -> AgentTokens {
        let text: String
        do {
            text = try TextFile.read(path)
        } catch {
            throw AgentTokenFileError(message: "cannot read the token file \(path): \(error)")
        }
        var entries: [(AgentRole, String)] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count == 2, let role = AgentRole(rawValue: String(fields[0])) else {
                throw AgentTokenFileError(message: "\(path):\(index + 1): expected 'reader TOKEN' or 'operator TOKEN'")
            }
            guard fields[1].count >= 16 else {
                throw AgentTokenFileError(message: "\(path):\(index + 1): the token is shorter than 16 characters")
            }
            entries.append((role, String(fields[1])))
        }
        guard !entries.isEmpty else { throw AgentTokenFileError(message: "\(path) holds no token") }
        return AgentTokens(entries: entries)
    }

    /// The role of `presented`, comparing against every token without stopping early.
    package func role(of presented: String) -> AgentRole? {
        let candidate = Array(presented.utf8)
        var found: AgentRole?
        for entry in entries {
            var difference: UInt8 = entry.token.count == candidate.count ? 0 : 1
            for index in 0..<max(entry.token.count, candidate.count) {
                let a = index < entry.token.count ? entry.token[index] : 0
                let b = index < candidate.count ? candidate[index] : 0
                difference |= a ^ b
            }
            if difference == 0 && (found == nil || found! < entry.role) { found = entry.role }
        }
        return found
    }
}

package struct AgentTokenFileError: Error, Sendable, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}
