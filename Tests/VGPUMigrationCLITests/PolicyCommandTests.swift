import Foundation
import Testing
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

func policy(_ arguments: [String]) throws -> ProcessOutcome {
    try ProductRunner.run("vgpu-migrate", ["policy"] + arguments + ["--policies", TestData.policies.path])
}

@Suite("Downtime policies")
struct PolicyCommandTests {
    @Test("Nova's formula: 500 ms / 10 steps / 75 s per GiB on 16 GiB")
    func novaDefault() throws {
        let steps = NovaSteps.steps(downtimeMilliseconds: 500, steps: 10, delaySecondsPerGiB: 75, memoryGiB: 16)
        #expect(steps.map(\.milliseconds) == [50, 95, 140, 185, 230, 275, 320, 365, 410, 455, 500])
        #expect(steps.map(\.seconds) == (0...10).map { $0 * 1200 })
        // data_gb is at least 2.
        #expect(
            NovaSteps.steps(downtimeMilliseconds: 500, steps: 10, delaySecondsPerGiB: 75, memoryGiB: 0.25)[1].seconds
                == 150)
    }

    @Test("Nova's vGPU recommendation: 500000 ms / 3 steps / 3 s per GiB")
    func novaVGPU() throws {
        let outcome = try policy(["schedule", "nova-vgpu", "--memory", "16GiB"])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("Policy nova-vgpu (nova) for a guest of 16GiB, cap 500000 ms:"))
        let rows = outcome.standardOutput.split(separator: "\n").filter { $0.hasPrefix("  at ") }.map { String($0) }
        #expect(rows.map { $0.split(separator: " ").dropFirst(1).first.map(String.init) } == ["0", "48", "96", "144"])
        #expect(
            rows.map { $0.split(separator: " ").suffix(2).first.map(String.init) } == [
                "166666", "277777", "388888", "500000",
            ])
    }

    @Test("list shows every shipped policy with its schedule; show prints the file")
    func listAndShow() throws {
        let list = try policy(["list"])
        #expect(list.status == 0)
        for name in [
            "adaptive (default)", "doubling", "fixed-300ms", "nova-default", "nova-vgpu", "stalled-iterations",
            "strict",
        ] {
            #expect(list.standardOutput.contains(name), "\(name)")
        }
        #expect(!list.standardOutput.contains("gpu-boards"))
        let show = try policy(["show", "stalled-iterations"])
        #expect(show.standardOutput.contains("abort_after: 8"))
    }

    @Test("the other schedules print what they react to")
    func otherSchedules() throws {
        let stalled = try policy(["schedule", "stalled-iterations", "--memory", "4GiB"]).standardOutput
        #expect(stalled.contains("after 6 stalled iterations") && stalled.contains("after 8 stalled iterations: abort"))
        let doubling = try policy(["schedule", "doubling", "--memory", "4GiB", "--json"]).standardOutput
        let steps = try #require(try JSONSerialization.jsonObject(with: Data(doubling.utf8)) as? [[String: String]])
        #expect(steps.first?["downtime_ms"] == "100")
        #expect(steps[1]["downtime_ms"] == "200")
        #expect(steps.last?["downtime_ms"] == "2000000")
        let adaptive = try policy(["schedule", "adaptive", "--memory", "4GiB"]).standardOutput
        #expect(adaptive.contains("from the start") && adaptive.contains("300 ms"))
        #expect(adaptive.contains("then force-switchover"))
    }

    @Test(
        "a broken policy is refused with file and line",
        arguments: [
            ("downtime:\n  schedule: nova\n", 2, "schedule nova needs a 'nova' section"),
            ("downtime:\n  schedule: sometimes\n", 2, "schedule must be adaptive, nova"),
            ("migration:\n  on_timeout: pause\n", 2, "on_timeout must be abort or force-switchover"),
            (
                "downtime:\n  schedule: stalled-iterations\n  stalled_iterations:\n    steps:\n      - { after: 2, ms: 100 }\n      - { after: 1, ms: 200 }\n    abort_after: 3\n",
                6, "increasing order"
            ),
            ("downtime:\n  max_ms: 3000000\n", 2, "between 1 and 2000000"),
        ])
    func brokenPolicy(yaml: String, line: Int, fragment: String) {
        #expect {
            _ = try MigrationPolicyFile.parseMigrationPolicy(yaml, name: "x", file: "x.yaml")
        } throws: { error in
            guard let error = error as? PolicyFileError else { return false }
            return error.line == line && error.message.contains(fragment)
        }
    }

    @Test("bad input exits 2 with a reason")
    func badInput() throws {
        #expect(
            try policy(["schedule", "nova-vgpu", "--memory", "lots"]).standardError.contains("--memory takes a size"))
        let missing = try policy(["show", "turbo"])
        #expect(missing.status == 2)
        #expect(missing.standardError.contains("no policy 'turbo'"))
    }
}
