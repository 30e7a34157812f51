import Foundation
import Testing
import VGPUMigrationCore

@testable import VGPUPolicies

@Suite("Text files")
struct TextFileTests {
    func withFile(_ bytes: [UInt8], _ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("text-\(UUID().uuidString).yaml").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test("reads a UTF-8 file")
    func readsUTF8() throws {
        try withFile(Array("name: café\n".utf8)) { path in
            let text = try TextFile.read(path)
            #expect(text == "name: café\n")
        }
    }

    @Test("a file that is not UTF-8 names the byte, and the line and column where a policy error would")
    func namesTheByte() throws {
        try withFile(Array("checks:\n  # caf".utf8) + [0xE9] + Array("\n".utf8)) { path in
            #expect {
                _ = try TextFile.read(path)
            } throws: { error in
                guard case .notUTF8(let cause) = error as? TextFileError else { return false }
                return cause.offset == 15 && (error as? TextFileError)?.remedy?.contains("iconv") == true
            }
            #expect {
                _ = try TextFile.readPolicyFile(path)
            } throws: { error in
                (error as? PolicyFileError)?.description
                    == "\(path):2:8: not UTF-8: byte 16 (line 2, column 8) is 0xE9, 'é' in Latin-1"
            }
        }
    }

    @Test("a missing file says so, with no remedy about its content")
    func missingFile() {
        #expect {
            _ = try TextFile.read("/nonexistent/policy.yaml")
        } throws: { error in
            guard let error = error as? TextFileError, case .unreadable = error else { return false }
            return error.remedy == nil && !error.description.isEmpty
        }
    }
}
