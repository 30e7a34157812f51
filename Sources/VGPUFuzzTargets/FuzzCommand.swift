import Foundation
import VGPUMigrationCore
import VGPUPolicies

/// `vgpu-fuzz` when it is not built for libFuzzer: lists the targets, writes their seed inputs,
/// and runs inputs through a target (a crash the fuzzer found, or a whole corpus).
package enum FuzzCommand {
    static let usage = """
        usage: vgpu-fuzz list
               vgpu-fuzz seed TARGET DIR      write TARGET's seed inputs into DIR
               vgpu-fuzz run TARGET PATH...   run files (or every file in directories) through TARGET
        Environment: VGPU_FUZZ_POLICIES (default policies), VGPU_FUZZ_FIXTURES (default Fixtures),
        VGPU_REALDATA (default ../shared/realdata). scripts/fuzz builds the libFuzzer binary and runs it.
        """

    /// Runs the command; returns the exit code.
    package static func run(arguments: [String], environment: [String: String]) -> Int32 {
        do {
            switch (arguments.first, arguments.count) {
            case ("list", 1):
                for target in FuzzTarget.allCases {
                    print(target.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0) + target.summary)
                }
            case ("seed", 3):
                let target = try self.target(arguments[1])
                let directory = URL(fileURLWithPath: arguments[2], isDirectory: true)
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                let inputs = try seeds(environment).inputs(for: target)
                for input in inputs {
                    try Data(input.bytes).write(to: directory.appendingPathComponent(input.name))
                }
                print("vgpu-fuzz: \(inputs.count) seed inputs for \(target.rawValue) in \(directory.path)")
            case ("run", 3...):
                let target = try self.target(arguments[1])
                let catalog = try loadCatalog(environment)
                var count = 0
                for path in arguments.dropFirst(2) {
                    for file in try inputFiles(path) {
                        target.run(Array(try Data(contentsOf: file)), catalog: catalog)
                        count += 1
                    }
                }
                print("vgpu-fuzz: \(count) inputs through \(target.rawValue), none crashed")
            default:
                FileHandle.standardError.write(Data((usage + "\n").utf8))
                return 2
            }
            return 0
        } catch {
            FileHandle.standardError.write(Data("vgpu-fuzz: \(error)\n".utf8))
            return 2
        }
    }

    static func target(_ name: String) throws -> FuzzTarget {
        guard let target = FuzzTarget(rawValue: name) else {
            throw FuzzCommandError("no fuzz target '\(name)'; targets: \(FuzzTarget.names)")
        }
        return target
    }

    static func seeds(_ environment: [String: String]) -> FuzzSeeds {
        let realData = URL(fileURLWithPath: environment["VGPU_REALDATA"] ?? "../shared/realdata", isDirectory: true)
        return FuzzSeeds(
            fixtures: URL(fileURLWithPath: environment["VGPU_FUZZ_FIXTURES"] ?? "Fixtures", isDirectory: true),
            realData: FileManager.default.fileExists(atPath: realData.path) ? realData : nil,
            policies: URL(fileURLWithPath: environment["VGPU_FUZZ_POLICIES"] ?? "policies", isDirectory: true))
    }

    /// The board table the host readers need (`policies/gpu-boards.yaml`).
    package static func loadCatalog(_ environment: [String: String]) throws -> GPUBoardCatalog {
        let path = (environment["VGPU_FUZZ_POLICIES"] ?? "policies") + "/" + GPUBoardCatalogFile.fileName
        return try GPUBoardCatalogFile.parse(try TextFile.readPolicyFile(path), file: path)
    }

    static func inputFiles(_ path: String) throws -> [URL] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw FuzzCommandError("no such file or directory: \(path)")
        }
        let url = URL(fileURLWithPath: path)
        guard isDirectory.boolValue else { return [url] }
        return try FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil)
            .filter { !$0.hasDirectoryPath }.sorted { $0.path < $1.path }
    }
}

struct FuzzCommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
