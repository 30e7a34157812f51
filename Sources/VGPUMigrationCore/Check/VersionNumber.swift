/// A dotted version compared number by number: `9.0.0`, `7.2.22`, or the numeric head of a
/// kernel release (`6.8.0-45-generic` → 6.8.0).
package struct VersionNumber: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    package var components: [Int]

    package init(_ components: [Int]) {
        self.components = components
    }

    /// Reads the leading `N(.N)*` of `text`; nil when it does not start with a number.
    package init?(_ text: some StringProtocol) {
        var components: [Int] = []
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            let digits = part.prefix(while: \.isASCIIDigit)
            guard !digits.isEmpty, digits.count <= 9, let value = Int(digits) else { break }
            components.append(value)
            if digits.count != part.count { break }
        }
        guard !components.isEmpty else { return nil }
        self.components = components
    }

    package var description: String { components.map(String.init).joined(separator: ".") }

    /// The driver branch: the first component (`550` of `550.90.05`).
    package var major: Int { components[0] }

    package static func < (lhs: VersionNumber, rhs: VersionNumber) -> Bool {
        for index in 0..<max(lhs.components.count, rhs.components.count) {
            let left = index < lhs.components.count ? lhs.components[index] : 0
            let right = index < rhs.components.count ? rhs.components[index] : 0
            if left != right { return left < right }
        }
        return false
    }

    package static func == (lhs: VersionNumber, rhs: VersionNumber) -> Bool { !(lhs < rhs) && !(rhs < lhs) }

    package func hash(into hasher: inout Hasher) {
        var trimmed = components
        while trimmed.count > 1, trimmed.last == 0 { trimmed.removeLast() }
        hasher.combine(trimmed)
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let version = VersionNumber(text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not a version")
        }
        self = version
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
