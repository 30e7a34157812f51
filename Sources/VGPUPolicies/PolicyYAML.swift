import Yams

/// A YAML node of a policy file, read with errors that carry `file:line:column`.
struct PolicyYAML {
    let node: Node
    let file: String

    /// Parses `text`; a syntax error names the line and column libyaml reports.
    static func parse(_ text: String, file: String) throws(PolicyFileError) -> PolicyYAML {
        do {
            // The basic resolver: every scalar stays text, typed here with file:line errors. The
            // default one would tag scalars with regular expressions, whose engine (ICU) costs
            // each command a few milliseconds to start.
            guard let node = try Yams.compose(yaml: text, .basic) else {
                throw PolicyFileError(file: file, line: 1, message: "the file is empty")
            }
            return PolicyYAML(node: node, file: file)
        } catch let error as PolicyFileError {
            throw error
        } catch let error as YamlError {
            switch error {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
                .composer(_, let problem, let mark, _):
                throw PolicyFileError(file: file, line: mark.line, column: mark.column, message: "YAML: \(problem)")
            default:
                throw PolicyFileError(file: file, message: "YAML: \(error)")
            }
        } catch {
            throw PolicyFileError(file: file, message: "YAML: \(error)")
        }
    }

    func error(_ message: String) -> PolicyFileError {
        PolicyFileError(file: file, line: node.mark?.line, column: node.mark?.column, message: message)
    }

    /// The key/value pairs of a mapping, in file order; unknown keys are refused.
    func mapping(allowedKeys: Set<String>? = nil, what: String) throws(PolicyFileError) -> [(
        key: PolicyYAML, value: PolicyYAML
    )] {
        guard let mapping = node.mapping else { throw error("\(what) must be a mapping of keys to values") }
        var pairs: [(key: PolicyYAML, value: PolicyYAML)] = []
        for (key, value) in mapping {
            let keyNode = PolicyYAML(node: key, file: file)
            if let allowedKeys {
                let name = try keyNode.string(what: "a key")
                if !allowedKeys.contains(name) {
                    throw keyNode.error(
                        "unknown key '\(name)' in \(what); expected one of: \(allowedKeys.sorted().joined(separator: ", "))"
                    )
                }
            }
            pairs.append((keyNode, PolicyYAML(node: value, file: file)))
        }
        return pairs
    }

    /// The value at `key` of a mapping; nil when absent.
    func optional(_ key: String) -> PolicyYAML? {
        guard let mapping = node.mapping, let value = mapping[key] else { return nil }
        return PolicyYAML(node: value, file: file)
    }

    /// The value at `key`; an error naming the mapping's line when absent.
    func required(_ key: String, in what: String) throws(PolicyFileError) -> PolicyYAML {
        guard let value = optional(key) else { throw error("\(what) has no '\(key)'") }
        return value
    }

    func sequence(what: String) throws(PolicyFileError) -> [PolicyYAML] {
        guard let sequence = node.sequence else { throw error("\(what) must be a list") }
        return sequence.map { PolicyYAML(node: $0, file: file) }
    }

    func string(what: String) throws(PolicyFileError) -> String {
        guard let scalar = node.scalar, !scalar.string.isEmpty else { throw error("\(what) must be a non-empty text") }
        return scalar.string
    }

    func int(what: String, range: ClosedRange<Int>) throws(PolicyFileError) -> Int {
        guard let scalar = node.scalar, let value = Int(scalar.string) else {
            throw error("\(what) must be a whole number, found '\(node.scalar?.string ?? "a structure")'")
        }
        guard range.contains(value) else {
            throw error("\(what) must be between \(range.lowerBound) and \(range.upperBound), found \(value)")
        }
        return value
    }

    func bool(what: String) throws(PolicyFileError) -> Bool {
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default: throw error("\(what) must be true or false, found '\(node.scalar?.string ?? "a structure")'")
        }
    }
}
