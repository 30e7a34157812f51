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
