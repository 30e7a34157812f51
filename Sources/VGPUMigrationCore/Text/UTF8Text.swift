/// Text that must be UTF-8 (domain XML, YAML, JSON, token files), decoded strictly: the
/// first byte that is not UTF-8 is named instead of being replaced or refused in general terms.
package enum UTF8Text {
    /// Decodes `bytes` as UTF-8. A UTF-8 byte order mark is kept, as the readers skip it.
    package static func decode(_ bytes: some Collection<UInt8>) throws(UTF8TextError) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        throw firstInvalidByte(in: Array(bytes))
    }

    /// Where decoding `bytes` first fails; only called for bytes that are not UTF-8.
    private static func firstInvalidByte(in bytes: [UInt8]) -> UTF8TextError {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = bytes.makeIterator()
        var offset = 0
        var line = 1
        var column = 1
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                if encoded.count == 1 && encoded.first == UInt8(ascii: "\n") {
                    line += 1
                    column = 1
                } else {
                    column += 1
                }
                offset += encoded.count
            case .error(let length):
                return UTF8TextError(
                    offset: offset, line: line, column: column, bytes: Array(bytes[offset..<offset + length]))
            case .emptyInput:
                // String(validating:) refused what the parser accepts: name the end.
                return UTF8TextError(offset: offset, line: line, column: column, bytes: [])
            }
        }
    }
}

/// Bytes that are not UTF-8, with where they are.
package struct UTF8TextError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Zero-based offset of the first byte that is not UTF-8.
    package var offset: Int
    package var line: Int
    /// The column on `line`: the characters before the bad byte, plus one.
    package var column: Int
    /// The bytes that do not form a character (one, or a truncated sequence).
    package var bytes: [UInt8]

    package var description: String {
        let shown = bytes.map { "0x" + String($0, radix: 16, uppercase: true) }.joined(separator: " ")
        var text =
            "not UTF-8: byte \(offset + 1) (line \(line), column \(column)) is \(shown.isEmpty ? "cut short" : shown)"
        if bytes.count == 1, let byte = bytes.first, byte >= 0xA0 {
            // A lone byte in A0–FF is most often Latin-1 (ISO 8859-1) text.
            text += ", '\(Character(Unicode.Scalar(byte)))' in Latin-1"
        }
        return text
    }

    /// What to do about it.
    package var remedy: String {
        "save the file as UTF-8, e.g. iconv -f ISO-8859-1 -t UTF-8 FILE > FILE.utf8"
    }
}
