import Foundation
import Testing
import VGPUTestSupport

/// The real file behind a shared library's soname, as the dynamic loader would find it.
private func installedLibrary(_ soname: String) throws -> String {
    for directory in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"] {
        let path = "\(directory)/\(soname)"
        if FileManager.default.fileExists(atPath: path) {
            return URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        }
    }
    throw CocoaError(.fileNoSuchFile, userInfo: [NSLocalizedDescriptionKey: "\(soname) is not installed here"])
}

/// Runs vgpu-migrate in a mount namespace of its own where each of `hidden` (sonames) is an empty
/// file: as on a machine where that library is missing or broken. The test's own process, and
/// every other one, keep the real libraries.
private func vgpuMigrate(hiding hidden: [String], _ arguments: [String]) throws -> ProcessOutcome {
    let mounts = try hidden.map { "mount --bind /dev/null '\(try installedLibrary($0))'" }.joined(separator: " && ")
    return try ProcessOutcome.run(
        URL(fileURLWithPath: "/usr/bin/unshare"),
        [
            "--mount", "--propagation", "private", "sh", "-c", "\(mounts) && exec \"$@\"", "sh",
            try ProductRunner.executable("vgpu-migrate").path,
        ] + arguments)
}

@Suite("vgpu-migrate where libvirt or libcurl cannot be loaded")
struct MissingLibrariesTests {
    @Test("history and show work without libvirt and libcurl: neither is loaded for them")
    func historyWithoutLibraries() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, records) = try await historyDatabase(in: directory)
        let history = try vgpuMigrate(hiding: ["libvirt.so.0", "libcurl.so.4"], ["history", "--database", path])
        #expect(history.status == 0, "\(history.standardError)")
        #expect(history.standardOutput.split(separator: "\n").count == 5)
        let show = try vgpuMigrate(
            hiding: ["libvirt.so.0", "libcurl.so.4"], ["show", records[0].id, "--database", path])
        #expect(show.status == 0, "\(show.standardError)")
        #expect(show.standardOutput.contains("completing → completed"))
    }

    @Test("a command that needs libvirt says it cannot load it and what to install")
    func libvirtMissing() throws {
        let working = try ProductRunner.run("vgpu-migrate", ["inspect", "--connect", "test:///default", "--json"])
        #expect(working.status == 0, "\(working.standardError)")
        let outcome = try vgpuMigrate(hiding: ["libvirt.so.0"], ["inspect", "--connect", "test:///default"])
        #expect(outcome.status != 0)
        #expect(outcome.standardError.contains("libvirt's client library cannot be loaded"), "\(outcome.standardError)")
        #expect(outcome.standardError.contains("apt install libvirt0"))
    }

    @Test("a command that calls an agent says it cannot load libcurl and what to install")
    func libcurlMissing() throws {
        let arguments = [
            "check", "vm-t4", "--from", "t4-a", "--to", "down", "--inventory", fixtureInventory, "--domain-xml",
            domainXML("vm-t4"), "--policies", TestData.policies.path,
        ]
        let outcome = try vgpuMigrate(hiding: ["libcurl.so.4"], arguments)
        #expect(outcome.status == 1)
        #expect(
            outcome.standardError.contains("cannot call host down's agent: libcurl cannot be loaded"),
            "\(outcome.standardError)")
        #expect(outcome.standardError.contains("apt install libcurl4"))
    }
}
