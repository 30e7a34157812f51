/// A strict, non-validating XML reader for libvirt-style documents.
///
/// It accepts well-formed XML 1.0 without an internal DTD subset: elements, attributes in
/// single or double quotes, character data, CDATA sections, comments, processing
/// instructions, a DOCTYPE without internal subset, the five predefined entities and
/// numeric character references. Everything else is an ``XMLSyntaxError`` naming the line
/// and column. Each element and attribute value keeps its byte range so callers can edit
/// the source without re-serialising it.
///
/// Elements nest at most ``maximumDepth`` levels, as libxml2 (which libvirt uses) allows by
/// default: a deeper document is refused at the first element past the limit, so a hostile
/// document cannot exhaust the stack.
package enum XMLReader {
    /// How deep elements may nest: libxml2's default limit (`xmlParserMaxDepth`).
    package static let maximumDepth = 256

    /// Parses a document with exactly one root element.
    package static func parseDocument(_ text: String) throws(XMLSyntaxError) -> XMLDocument {
        var cursor = Cursor(bytes: Array(text.utf8))
        let roots = try cursor.parseTopLevel(allowMultipleRoots: false)
        guard let root = roots.first else {
            throw XMLSyntaxError(position: cursor.position, message: "the document has no root element")
        }
        return XMLDocument(root: root, source: cursor.bytes)
    }

    /// Parses a text holding one or more top-level elements one after the other, as
    /// libvirt writes when it prints several node devices in a row.
    package static func parseElements(_ text: String) throws(XMLSyntaxError) -> [XMLElement] {
        var cursor = Cursor(bytes: Array(text.utf8))
        let roots = try cursor.parseTopLevel(allowMultipleRoots: true)
        if roots.isEmpty {
            throw XMLSyntaxError(position: cursor.position, message: "the text holds no element")
        }
        return roots
    }
}

private struct Cursor {
    let bytes: [UInt8]
    var offset = 0
    var line = 1
    var lineStart = 0
    /// Elements open around the one being read.
    var depth = 0

    init(bytes: [UInt8]) {
        self.bytes = bytes
        // A UTF-8 byte order mark is allowed before the document.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            offset = 3
            lineStart = 3
        }
    }

    var position: XMLPosition { XMLPosition(line: line, column: offset - lineStart + 1) }
    var atEnd: Bool { offset >= bytes.count }
    var current: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    func error(_ message: String, at position: XMLPosition? = nil) -> XMLSyntaxError {
        XMLSyntaxError(position: position ?? self.position, message: message)
    }

    mutating func advance() {
        if bytes[offset] == UInt8(ascii: "\n") {
            line += 1
            lineStart = offset + 1
        }
        offset += 1
    }

    func lookingAt(_ literal: String) -> Bool {
        var i = offset
        for byte in literal.utf8 {
            guard i < bytes.count, bytes[i] == byte else { return false }
            i += 1
        }
        return true
    }

    mutating func skip(_ literal: String) {
        for _ in literal.utf8 { advance() }
    }

    mutating func skipWhitespace() {
        while let byte = current, byte.isXMLWhitespace { advance() }
    }

    /// Advances past `terminator`, failing with `what` if the text ends first.
    mutating func skip(through terminator: String, what: String) throws(XMLSyntaxError) -> Range<Int> {
        let start = offset
        let startPosition = position
        while !atEnd {
            if lookingAt(terminator) {
                let range = start..<offset
                skip(terminator)
                return range
            }
            advance()
        }
        throw error("\(what) that starts here is never closed with '\(terminator)'", at: startPosition)
    }

    // MARK: Top level

    mutating func parseTopLevel(allowMultipleRoots: Bool) throws(XMLSyntaxError) -> [XMLElement] {
        var roots: [XMLElement] = []
        while true {
            skipWhitespace()
            guard let byte = current else { break }
            if lookingAt("<?") {
                _ = try skip(through: "?>", what: "processing instruction")
            } else if lookingAt("<!--") {
                try skipComment()
            } else if lookingAt("<!DOCTYPE") {
                guard roots.isEmpty else { throw error("DOCTYPE after the root element") }
                try skipDoctype()
            } else if byte == UInt8(ascii: "<") {
                if !roots.isEmpty && !allowMultipleRoots {
                    throw error("a second root element; an XML document has exactly one")
                }
                roots.append(try parseElement())
            } else {
                throw error("text outside the root element")
            }
        }
        return roots
    }

    mutating func skipComment() throws(XMLSyntaxError) {
        let start = position
        skip("<!--")
        let body = try skip(through: "-->", what: "comment")
        var previous: UInt8 = 0
        for byte in bytes[body] {
            if byte == 0x2D && previous == 0x2D {
                throw error("'--' is not allowed inside a comment", at: start)
            }
            previous = byte
        }
    }

    mutating func skipDoctype() throws(XMLSyntaxError) {
        let start = position
        skip("<!DOCTYPE")
        while let byte = current {
            if byte == UInt8(ascii: "[") {
                throw error("DOCTYPE with an internal subset is not supported", at: start)
            }
            advance()
            if byte == UInt8(ascii: ">") { return }
        }
        throw error("DOCTYPE that starts here is never closed", at: start)
    }

    // MARK: Elements

    mutating func parseName() throws(XMLSyntaxError) -> String {
        let start = offset
        guard let first = current, first.isXMLNameStart else {
            throw error("expected a name, found \(describeCurrent())")
        }
        _ = first
        advance()
        while let byte = current, byte.isXMLNameChar { advance() }
        return String(decoding: bytes[start..<offset], as: UTF8.self)
    }

    func describeCurrent() -> String {
        guard let byte = current else { return "the end of the text" }
        if byte >= 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        return "byte 0x\(String(byte, radix: 16))"
    }

    mutating func parseElement() throws(XMLSyntaxError) -> XMLElement {
        let start = offset
        let startPosition = position
        guard depth < XMLReader.maximumDepth else {
            throw error(
                "elements nest more than \(XMLReader.maximumDepth) levels deep here (the limit libxml2 and libvirt apply)"
            )
        }
        depth += 1
        defer { depth -= 1 }
        advance()  // '<'
        let name = try parseName()
        var attributes: [XMLAttribute] = []
        while true {
            let hadSpace = current?.isXMLWhitespace ?? false
            skipWhitespace()
            guard let byte = current else {
                throw error("start tag <\(name)> is never closed", at: startPosition)
            }
            if byte == UInt8(ascii: "/") {
                advance()
                guard current == UInt8(ascii: ">") else { throw error("expected '>' after '/' in <\(name)>") }
                advance()
                return XMLElement(
                    name: name, attributes: attributes, children: [], text: "", position: startPosition,
                    sourceRange: start..<offset)
            }
            if byte == UInt8(ascii: ">") {
                advance()
                break
            }
            guard hadSpace else { throw error("expected white space before an attribute in <\(name)>") }
            let attribute = try parseAttribute(in: name)
            if attributes.contains(where: { $0.name == attribute.name }) {
                throw error("attribute '\(attribute.name)' appears twice in <\(name)>", at: attribute.position)
            }
            attributes.append(attribute)
        }

        var children: [XMLElement] = []
        var text = ""
        while true {
            guard let byte = current else {
                throw error("element <\(name)> that starts here is never closed", at: startPosition)
            }
            if byte == UInt8(ascii: "<") {
                if lookingAt("</") {
                    let closePosition = position
                    skip("</")
                    let closing = try parseName()
                    skipWhitespace()
                    guard current == UInt8(ascii: ">") else { throw error("expected '>' to end </\(closing)>") }
                    advance()
                    guard closing == name else {
                        throw error(
                            "end tag </\(closing)> does not match start tag <\(name)> at \(startPosition)",
                            at: closePosition)
                    }
                    return XMLElement(
                        name: name, attributes: attributes, children: children, text: text,
                        position: startPosition, sourceRange: start..<offset)
                } else if lookingAt("<!--") {
                    try skipComment()
                } else if lookingAt("<![CDATA[") {
                    skip("<![CDATA[")
                    let range = try skip(through: "]]>", what: "CDATA section")
                    text += String(decoding: bytes[range], as: UTF8.self)
                } else if lookingAt("<?") {
                    _ = try skip(through: "?>", what: "processing instruction")
                } else if lookingAt("<!") {
                    throw error("unexpected markup declaration inside <\(name)>")
                } else {
                    children.append(try parseElement())
                }
            } else if byte == UInt8(ascii: "&") {
                text += try parseReference()
            } else {
                let runStart = offset
                while let b = current, b != UInt8(ascii: "<"), b != UInt8(ascii: "&") {
                    if b == UInt8(ascii: ">") && offset >= 2 && bytes[offset - 2] == 0x5D && bytes[offset - 1] == 0x5D {
                        throw error("']]>' is not allowed in character data")
                    }
                    advance()
                }
                text += String(decoding: bytes[runStart..<offset], as: UTF8.self)
            }
        }
    }

    mutating func parseAttribute(in element: String) throws(XMLSyntaxError) -> XMLAttribute {
        let attributePosition = position
        let name = try parseName()
        skipWhitespace()
        guard current == UInt8(ascii: "=") else {
            throw error("attribute '\(name)' in <\(element)> has no '=' and value")
        }
        advance()
        skipWhitespace()
        guard let quote = current, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
            throw error("the value of attribute '\(name)' in <\(element)> must be quoted")
        }
        advance()
        let valueStart = offset
        var value = ""
        while true {
            guard let byte = current else {
                throw error("the value of attribute '\(name)' is never closed", at: attributePosition)
            }
            if byte == quote { break }
            if byte == UInt8(ascii: "<") {
                throw error("'<' is not allowed in the value of attribute '\(name)'")
            }
            if byte == UInt8(ascii: "&") {
                value += try parseReference()
            } else {
                let runStart = offset
                while let b = current, b != quote, b != UInt8(ascii: "<"), b != UInt8(ascii: "&") { advance() }
                value += String(decoding: bytes[runStart..<offset], as: UTF8.self)
            }
        }
        let valueRange = valueStart..<offset
        advance()  // closing quote
        return XMLAttribute(name: name, value: value, valueRange: valueRange, position: attributePosition)
    }

    mutating func parseReference() throws(XMLSyntaxError) -> String {
        let referencePosition = position
        advance()  // '&'
        let start = offset
        while let byte = current, byte != UInt8(ascii: ";") {
            guard offset - start < 12 else {
                throw error("entity reference is never closed with ';'", at: referencePosition)
            }
            advance()
        }
        guard current == UInt8(ascii: ";") else {
            throw error("entity reference is never closed with ';'", at: referencePosition)
        }
        let body = String(decoding: bytes[start..<offset], as: UTF8.self)
        advance()
        switch body {
        case "lt": return "<"
        case "gt": return ">"
        case "amp": return "&"
        case "quot": return "\""
        case "apos": return "'"
        default:
            var number: UInt32?
            if body.hasPrefix("#x") {
                number = UInt32(body.dropFirst(2), radix: 16)
            } else if body.hasPrefix("#") {
                number = UInt32(body.dropFirst(), radix: 10)
            }
            guard let number else { throw error("unknown entity '&\(body);'", at: referencePosition) }
            guard let scalar = Unicode.Scalar(number), number != 0 else {
                throw error("character reference '&\(body);' is not a valid character", at: referencePosition)
            }
            return String(Character(scalar))
        }
    }
}

extension UInt8 {
    fileprivate var isXMLWhitespace: Bool { self == 0x20 || self == 0x09 || self == 0x0A || self == 0x0D }
    fileprivate var isXMLNameStart: Bool {
        (self >= 0x41 && self <= 0x5A) || (self >= 0x61 && self <= 0x7A) || self == 0x5F || self == 0x3A || self >= 0x80
    }
    fileprivate var isXMLNameChar: Bool {
        isXMLNameStart || (self >= 0x30 && self <= 0x39) || self == 0x2D || self == 0x2E
    }
}
