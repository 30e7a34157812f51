import Foundation
import VGPUMigrationCore
import VGPUPolicies

/// Finds the policies directory: `--policies`, then `$VGPU_MIGRATE_POLICIES`, then
/// `/etc/vgpu-migrate/policies`, then a `policies/` folder above the executable (a build tree).
package enum PolicyDirectory {
    package static func locate(explicit: String?) throws(CommandFailure) -> URL {
        if let explicit {
            return try checked(URL(fileURLWithPath: explicit), from: "--policies")
        }
        if let fromEnvironment = ProcessInfo.processInfo.environment["VGPU_MIGRATE_POLICIES"], !fromEnvironment.isEmpty
        {
            return try checked(URL(fileURLWithPath: fromEnvironment), from: "VGPU_MIGRATE_POLICIES")
        }
        if let configured = try CoordinatorSettings.current()?.policies {
            return try checked(URL(fileURLWithPath: configured), from: "policies in the settings file")
        }
        let system = URL(fileURLWithPath: "/etc/vgpu-migrate/policies")
        if FileManager.default.fileExists(atPath: system.appendingPathComponent(GPUBoardCatalogFile.fileName).path) {
            return system
        }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("policies")
            if FileManager.default.fileExists(
                atPath: candidate.appendingPathComponent(GPUBoardCatalogFile.fileName).path)
            {
                return candidate
            }
            directory.deleteLastPathComponent()
        }
        throw CommandFailure(
            "no policies directory found",
            remedy:
                "pass --policies DIR, set VGPU_MIGRATE_POLICIES, or install the project's policies/ to /etc/vgpu-migrate/policies",
            exitCode: CommandFailure.usageOrConfiguration)
    }

    private static func checked(_ url: URL, from origin: String) throws(CommandFailure) -> URL {
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent(GPUBoardCatalogFile.fileName).path)
        else {
            throw CommandFailure(
                "\(origin) names \(url.path), which has no \(GPUBoardCatalogFile.fileName)",
                remedy: "point it at the project's policies/ directory", exitCode: CommandFailure.usageOrConfiguration)
        }
        return url
    }

    /// Loads the GPU board table from the policies directory.
    package static func boardCatalog(in directory: URL) throws(CommandFailure) -> GPUBoardCatalog {
        let url = directory.appendingPathComponent(GPUBoardCatalogFile.fileName)
        let text: String
        do {
            text = try TextFile.read(url.path)
        } catch {
            throw CommandFailure(
                "cannot read \(url.path): \(error)", remedy: error.remedy,
                exitCode: CommandFailure.usageOrConfiguration)
        }
        do {
            return try GPUBoardCatalogFile.parse(text, file: url.path)
        } catch {
            throw CommandFailure(
                error.description, remedy: "fix the board table", exitCode: CommandFailure.usageOrConfiguration)
        }
    }

    /// Loads migration policy `name` (`policies/NAME.yaml`), with the directory's kernel
    /// backport table in its checks.
    package static func migrationPolicy(named name: String, in directory: URL) throws(CommandFailure)
        -> MigrationPolicy
    {
        let url = directory.appendingPathComponent("\(name).yaml")
        guard FileManager.default.fileExists(atPath: url.path), !PolicyTables.isTable(name) else {
            throw CommandFailure(
                "no policy '\(name)' in \(directory.path)",
                remedy: "policies there: \(policyNames(in: directory).joined(separator: ", "))",
                exitCode: CommandFailure.usageOrConfiguration)
        }
        var policy: MigrationPolicy
        do {
            policy = try MigrationPolicyFile.parseMigrationPolicy(
                try TextFile.readPolicyFile(url.path), name: name, file: url.path)
        } catch {
            throw CommandFailure(error.description, exitCode: CommandFailure.usageOrConfiguration)
        }
        policy.checks.kernelBackports = try kernelBackports(in: directory)
        return policy
    }

    /// The checks of migration policy `name`, with the kernel backport table.
    package static func policy(named name: String, in directory: URL) throws(CommandFailure) -> CheckPolicy {
        try migrationPolicy(named: name, in: directory).checks
    }

    /// The policies in `directory` (its YAML files but the tables), sorted.
    package static func policyNames(in directory: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
            .filter { $0.hasSuffix(".yaml") && !PolicyTables.fileNames.contains($0) }.map { String($0.dropLast(5)) }
            .sorted()
    }

    /// The kernel backport table (`kernel-backports.yaml`); none when the directory has no such file.
    package static func kernelBackports(in directory: URL) throws(CommandFailure) -> [KernelBackport] {
        let url = directory.appendingPathComponent(KernelBackportsFile.fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        do {
            return try KernelBackportsFile.parse(try TextFile.readPolicyFile(url.path), file: url.path)
        } catch {
            throw CommandFailure(
                error.description, remedy: "fix the kernel backport table",
                exitCode: CommandFailure.usageOrConfiguration)
        }
    }
}
