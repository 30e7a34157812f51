import Foundation

/// Where test data lives: the project's `Fixtures/` and the shared real-world data in
/// `../shared/realdata` (override with `VGPU_REALDATA`).
package enum TestData {
    /// The package root (the directory holding Package.swift).
    package static let packageRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
                return url
            }
        }
        fatalError("Package.swift not found above \(#filePath)")
    }()

    package static var fixtures: URL { packageRoot.appendingPathComponent("Fixtures") }
    package static var policies: URL { packageRoot.appendingPathComponent("policies") }

    /// The shared real-world data. Tests that need it fail (not skip) when it is absent.
    package static var realdata: URL {
        if let override = ProcessInfo.processInfo.environment["VGPU_REALDATA"] {
            return URL(fileURLWithPath: override)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/realdata")
    }

    package static func text(_ url: URL) throws -> String {
        try String(contentsOf: url, encoding: .utf8)
    }

    /// Every file under `directory` whose name ends with `suffix`, sorted by path.
    package static func files(under directory: URL, suffix: String) throws -> [URL] {
        guard let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil) else {
            throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: directory.path])
        }
        return enumerator.compactMap { $0 as? URL }.filter { $0.lastPathComponent.hasSuffix(suffix) }
            .sorted { $0.path < $1.path }
    }
}

/// What a finished process wrote and how it ended.
package struct ProcessOutcome: Sendable {
    package var status: Int32
    package var standardOutput: String
    package var standardError: String
}

/// Runs the project's executables as an operator would.
package enum ProductRunner {
    /// The built executable `name`: beside the test bundle (`swift test`), else in `.build/debug`.
    package static func executable(_ name: String) throws -> URL {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name),
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(name),
            TestData.packageRoot.appendingPathComponent(".build/debug/\(name)"),
        ]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw CocoaError(
                .fileNoSuchFile,
                userInfo: [
                    NSLocalizedDescriptionKey: "executable \(name) not built; looked at \(candidates.map(\.path))"
                ])
        }
        return found
    }

    /// Runs `name` with `arguments` to completion and returns its outcome.
    package static func run(_ name: String, _ arguments: [String], environment: [String: String] = [:]) throws
        -> ProcessOutcome
    {
        let process = Process()
        process.executableURL = try executable(name)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes to the end before waiting, so a large output cannot block the child.
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return ProcessOutcome(
            status: process.terminationStatus, standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self))
    }
}
