import Testing

@testable import VGPUMigrationCore

@Suite("UTF-8 text")
struct UTF8TextTests {
    @Test("decodes UTF-8 as it is, byte order mark included")
    func decodesUTF8() throws {
        #expect(try UTF8Text.decode(Array("<name>café ✓</name>".utf8)) == "<name>café ✓</name>")
        #expect(try UTF8Text.decode([0xEF, 0xBB, 0xBF, 0x61]) == "\u{FEFF}a")
        #expect(try UTF8Text.decode([UInt8]()) == "")
    }

    @Test(
        "names the first byte that is not UTF-8, its line and column",
        arguments: [
            // Latin-1 'é' in the second line, after a two-byte character on the first.
            (Array("ü\n<n>caf".utf8) + [0xE9] + Array("</n>".utf8), 10, 2, 7, "0xE9, 'é' in Latin-1"),
            // A stray continuation byte first of all.
            ([0x80, 0x61], 1, 1, 1, "0x80"),
            // A three-byte sequence cut short by a newline.
            ([0x61, 0xE2, 0x9C, 0x0A], 2, 1, 2, "0xE2 0x9C"),
            // An overlong encoding of '/', which UTF-8 forbids.
            ([0x61, 0xC0, 0xAF], 2, 1, 2, "0xC0"),
            // Cut short at the end of the text.
            ([0x61, 0xF0, 0x9F], 2, 1, 2, "0xF0 0x9F"),
        ])
    func namesTheBadByte(bytes: [UInt8], byte: Int, line: Int, column: Int, shown: String) {
        #expect {
            _ = try UTF8Text.decode(bytes)
        } throws: { error in
            guard let error = error as? UTF8TextError else { return false }
            return error.offset == byte - 1 && error.line == line && error.column == column
                && error.description.contains("byte \(byte) (line \(line), column \(column)) is \(shown)")
        }
    }
}
