import Testing

@testable import VGPUMigrationCore

@Suite("XML reader")
struct XMLReaderTests {
    @Test("reads elements, attributes, text and entities")
    func readsWellFormedDocument() throws {
        let text = """
            <?xml version="1.0"?>
            <!-- a comment -->
            <domain type='kvm' id="3">
              <name>a &amp; b</name>
              <description><![CDATA[<raw>]]></description>
              <memory unit='KiB'>1024</memory>
              <empty/>
            </domain>
            """
        let document = try XMLReader.parseDocument(text)
        #expect(document.root.name == "domain")
        #expect(document.root.attribute("type") == "kvm")
        #expect(document.root.attribute("id") == "3")
        #expect(document.root.child("name")?.trimmedText == "a & b")
        #expect(document.root.child("description")?.text == "<raw>")
        #expect(document.root.children.map(\.name) == ["name", "description", "memory", "empty"])
        #expect(document.root.position == XMLPosition(line: 3, column: 1))
        let type = try #require(document.root.attributeRecord("type"))
        #expect(String(decoding: document.source[type.valueRange], as: UTF8.self) == "kvm")
    }

    @Test(
        "rejects malformed XML with the line and column",
        arguments: [
            ("<a><b></a>", 1, 7, "does not match"),
            ("<a>\n  <b x='1' x='2'/></a>", 2, 12, "appears twice"),
            ("<a>&nbsp;</a>", 1, 4, "unknown entity"),
            ("<a></a><b/>", 1, 8, "second root"),
            ("<a x=1/>", 1, 6, "must be quoted"),
            ("<a>\n<b>", 2, 1, "never closed"),
            ("", 1, 1, "no root"),
            ("<a x='<'/>", 1, 7, "'<' is not allowed"),
        ])
    func rejectsMalformed(text: String, line: Int, column: Int, fragment: String) {
        #expect {
            _ = try XMLReader.parseDocument(text)
        } throws: { error in
            guard let error = error as? XMLSyntaxError else { return false }
            return error.position == XMLPosition(line: line, column: column) && error.message.contains(fragment)
        }
    }

    @Test("reads several top-level elements in a row")
    func readsElementSequence() throws {
        let elements = try XMLReader.parseElements("<device><name>a</name></device>\n<device><name>b</name></device>\n")
        #expect(elements.map { $0.child("name")?.trimmedText } == ["a", "b"])
    }

    /// `levels` nested elements, one per line: `<a>` on line 1 … line `levels`.
    static func nested(_ levels: Int) -> String {
        String(repeating: "<a>\n", count: levels) + String(repeating: "</a>", count: levels)
    }

    @Test("reads elements nested as deep as libxml2 allows")
    func readsNestingAtTheLimit() throws {
        var element = try XMLReader.parseDocument(Self.nested(XMLReader.maximumDepth)).root
        var levels = 1
        while let child = element.children.first {
            element = child
            levels += 1
        }
        #expect(levels == 256)
    }

    @Test(
        "refuses nesting past the limit at the first element too deep, without exhausting the stack",
        arguments: [257, 5_000, 200_000])
    func refusesDeepNesting(levels: Int) {
        let text = Self.nested(levels)
        let isDepthError = { (error: any Error) -> Bool in
            guard let error = error as? XMLSyntaxError else { return false }
            return error.position == XMLPosition(line: 257, column: 1) && error.message.contains("more than 256 levels")
        }
        #expect(performing: { _ = try XMLReader.parseDocument(text) }, throws: isDepthError)
        #expect(performing: { _ = try XMLReader.parseElements(text) }, throws: isDepthError)
    }
}
