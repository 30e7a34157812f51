import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUPolicies

@Suite("Kernel backport table")
struct KernelBackportsFileTests {
    @Test("the shipped table reads")
    func shipped() throws {
        let url = TestData.policies.appendingPathComponent(KernelBackportsFile.fileName)
        let table = try KernelBackportsFile.parse(try TestData.text(url), file: url.path)
        let rhel = try #require(table.first)
        #expect(rhel.upstream == VersionNumber([5, 14, 0]) && rhel.tag == "el9" && rhel.minimumBuild == 427)
        #expect(rhel.source?.hasPrefix("https://") == true)
    }

    @Test(
        "a broken table is an error with file:line and what is wrong",
        arguments: [
            (
                "backports:\n  - name: x\n    kernel: 5.14\n    tag: el9\n    minimum_build: 1\n", "3",
                "upstream version"
            ),
            (
                "backports:\n  - name: x\n    kernel: 5.14.0\n    tag: el/9\n    minimum_build: 1\n", "4",
                "letters and digits"
            ),
            (
                "backports:\n  - name: x\n    kernel: 5.14.0\n    tag: el9\n    minimum_build: many\n", "5",
                "whole number"
            ),
            ("backports:\n  - name: x\n    kernel: 5.14.0\n    tag: el9\n", "2", "no 'minimum_build'"),
            (
                "backports:\n  - name: x\n    kernel: 5.14.0\n    tag: el9\n    minimum_build: 1\n    distro: y\n", "6",
                "unknown key"
            ),
            ("backport: []\n", "1", "unknown key"),
            ("backports: [\n", "2", "YAML"),
        ])
    func errors(text: String, line: String, fragment: String) {
        #expect {
            try KernelBackportsFile.parse(text, file: "kernel-backports.yaml")
        } throws: { error in
            let description = (error as? PolicyFileError)?.description ?? ""
            return description.hasPrefix("kernel-backports.yaml:\(line):") && description.contains(fragment)
        }
    }
}
