import Foundation
import Testing
import VGPUHost
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUFuzzTargets

let seeds = FuzzSeeds(fixtures: TestData.fixtures, realData: TestData.realdata, policies: TestData.policies)

/// The board table, read as `vgpu-fuzz` reads it.
func boardCatalog() throws -> GPUBoardCatalog {
    try FuzzCommand.loadCatalog(["VGPU_FUZZ_POLICIES": TestData.policies.path])
}

/// Inputs the fuzzer once crashed a target with, kept under `Regressions/TARGET/`.
func regressionInputs(_ target: FuzzTarget) throws -> [URL] {
    let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Regressions/\(target.rawValue)")
    guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
    return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
}

@Suite("Fuzz targets")
struct FuzzTargetTests {
    @Test("every target takes its seed inputs and the crashes kept as regressions", arguments: FuzzTarget.allCases)
    func seedsAndRegressions(target: FuzzTarget) throws {
        let catalog = try boardCatalog()
        let inputs = try seeds.inputs(for: target)
        #expect(inputs.count >= 4, "\(inputs.map(\.name))")
        for input in inputs { target.run(input.bytes, catalog: catalog) }
        for file in try regressionInputs(target) { target.run(Array(try Data(contentsOf: file)), catalog: catalog) }
    }

    @Test("the seeds reach the readers: domains, node devices and YAML files of the field read")
    func seedsAreRealInput() throws {
        let xml = try seeds.inputs(for: .domain).compactMap { try? UTF8Text.decode($0.bytes) }
        #expect(xml.filter { (try? GuestDomain.parse(xml: $0)) != nil }.count >= 5)
        #expect(xml.filter { (try? NodeDevice.parse(xml: $0)) != nil }.count >= 10)
        let yaml = try seeds.inputs(for: .policyYAML).compactMap { try? UTF8Text.decode($0.bytes) }
        #expect(
            yaml.filter { (try? MigrationPolicyFile.parseMigrationPolicy($0, name: "p", file: "p")) != nil }.count >= 5)
    }

    @Test(
        "a fixture tree in memory reads as the same host as on disk", arguments: ["t4-a", "a100-40gb", "l40s", "mtty"])
    func memoryTreeFollowsTheDirectory(fixture: String) throws {
        let catalog = try boardCatalog()
        let root = TestData.fixtures.appendingPathComponent("hosts/\(fixture)")
        let onDisk = try SysfsHostProbe(sysfs: DirectorySysfs(root: root.path), catalog: catalog).inventory()
        let archive = try FuzzSeeds.archive(of: root)
        let inMemory = try SysfsHostProbe(sysfs: MemorySysfs(archive: archive), catalog: catalog).inventory()
        #expect(!onDisk.gpus.isEmpty && inMemory.gpus == onDisk.gpus)
        #expect(inMemory.kernelRelease == onDisk.kernelRelease && inMemory.hostname == onDisk.hostname)
        #expect(MemorySysfs(archive: archive).archive == archive)
    }

    @Test("links that loop end with ELOOP's error, not a hang")
    func linkLoop() throws {
        var tree = MemorySysfs()
        tree.add("sys/a", .link("b"))
        tree.add("sys/b", .link("a"))
        #expect(throws: SysfsError.self) { _ = try tree.readFile("sys/a/x") }
        #expect(throws: SysfsError.self) { _ = try tree.listDirectory("sys/a") }
        #expect(try tree.readLink("sys/a") == "b")
    }

    @Test("vgpu-fuzz replays inputs through a target and refuses an unknown target")
    func replayCommand() throws {
        let environment = [
            "VGPU_FUZZ_POLICIES": TestData.policies.path, "VGPU_FUZZ_FIXTURES": TestData.fixtures.path,
        ]
        let run = try ProductRunner.run(
            "vgpu-fuzz", ["run", "domain", TestData.fixtures.appendingPathComponent("domains").path],
            environment: environment)
        #expect(run.status == 0, "\(run.standardError)")
        #expect(run.standardOutput.contains("inputs through domain, none crashed"))
        let unknown = try ProductRunner.run("vgpu-fuzz", ["run", "yaml", "/dev/null"], environment: environment)
        #expect(unknown.status == 2 && unknown.standardError.contains("no fuzz target 'yaml'; targets: xml, domain"))
    }
}
