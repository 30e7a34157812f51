/// A position in an XML text, for error messages an operator can act on.
package struct XMLPosition: Sendable, Hashable, CustomStringConvertible {
    /// 1-based line number.
    package var line: Int
    /// 1-based column, counted in UTF-8 bytes.
    package var column: Int

    package var description: String { "line \(line), column \(column)" }
}

/// One attribute of an element, with where its raw value sits in the source bytes.
package struct XMLAttribute: Sendable, Hashable {
    package var name: String
    /// The value with entity and character references decoded.
    package var value: String
    /// Byte range of the raw value between the quotes, in the UTF-8 source.
    package var valueRange: Range<Int>
    package var position: XMLPosition
}

/// An element of a parsed XML document.
///
/// Only what the project needs is kept: names, attributes, child elements and the
/// concatenated character data directly inside the element. Comments and processing
/// instructions are skipped.
package struct XMLElement: Sendable, Hashable {
    package var name: String
    package var attributes: [XMLAttribute]
    package var children: [XMLElement]
    /// Character data directly inside this element (not inside children), decoded.
    package var text: String
    package var position: XMLPosition
    /// Byte range of the whole element, from `<` of the start tag to `>` of the end tag.
    package var sourceRange: Range<Int>

    /// The value of the attribute `name`, if present.
    package func attribute(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    /// The attribute record `name`, if present.
    package func attributeRecord(_ name: String) -> XMLAttribute? {
        attributes.first { $0.name == name }
    }

    /// The first child element called `name`.
    package func child(_ name: String) -> XMLElement? {
        children.first { $0.name == name }
    }

    /// All child elements called `name`, in document order.
    package func children(_ name: String) -> [XMLElement] {
        children.filter { $0.name == name }
    }

    /// Text of the element with surrounding white space removed.
    package var trimmedText: String { text.trimmingXMLWhitespace() }
}

/// A parsed XML document: its root element and the exact source it came from.
package struct XMLDocument: Sendable {
    package var root: XMLElement
    /// The document text as UTF-8 bytes, kept so that edits can be applied byte for byte.
    package var source: [UInt8]
}

/// Why a text is not well-formed XML.
package struct XMLSyntaxError: Error, Sendable, Hashable, CustomStringConvertible {
    package var position: XMLPosition
    package var message: String

    package var description: String { "XML syntax error at \(position): \(message)" }
}

extension String {
    /// The string without leading and trailing XML white space (space, tab, CR, LF).
    package func trimmingXMLWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
