import Foundation
import VGPUTestSupport

/// What `vgpu-migrate … --json` printed, decoded (times in ISO 8601).
func decodedJSON<T: Decodable>(_ type: T.Type, from output: String) throws -> T {
    let decoder = JSONDecoder()
    // The product writes RFC 3339 times to the millisecond (HistoryText.timestamp).
    decoder.dateDecodingStrategy = .custom { decoder in
        let text = try decoder.singleValueContainer().decode(String.self)
        return try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
    }
    return try decoder.decode(type, from: Data(output.utf8))
}

/// The migration id of a `vgpu-migrate migrate` run, from its first line
/// (`migration ID: VM SRC → DST, policy P`); nil before that line is written.
func migrationID(of migration: RunningProcess) -> String? {
    guard let first = migration.standardOutput.split(separator: "\n").first, first.hasPrefix("migration ") else {
        return nil
    }
    return first.split(separator: " ").dropFirst().first.map { String($0.dropLast()) }
}
