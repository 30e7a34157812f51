import Foundation
import Testing
import VGPUTestSupport

/// Starts the lab guest `vm` on src, idle with 32 MiB written, and returns the options of a
/// `migrate` to dst under the policy `slow` (4 MiB/s: the job runs for seconds):
/// `--policy slow --inventory … --database DIRECTORY/history.sqlite --policies …`.
func slowMigrationOptions(_ lab: Lab, vm: String, in directory: URL) async throws -> [String] {
    let start = try lab.startCheckingGuest(vm, dirtyMiBPerSecond: 0, workingSetMiB: 32, memoryMiB: 128)
    #expect(start.status == 0, "\(start.standardError)")
    #expect(await eventually(within: 60) { !lab.guestReports(vm, on: "src").isEmpty })
    let policies = try policiesWith(
        "slow", from: "adaptive", in: directory,
        [("  on_timeout: force-switchover", "  on_timeout: force-switchover\n  bandwidth_mib_per_s: 4")])
    return [
        "--policy", "slow", "--inventory", try labInventory(lab, in: directory), "--database",
        directory.appendingPathComponent("history.sqlite").path, "--policies", policies,
    ]
}

/// Runs `vgpu-migrate ARGUMENTS` on a pseudo-terminal (`script` from util-linux); what the
/// test sends goes to the terminal as typed keys.
func vgpuMigrateOnTerminal(_ arguments: [String], in directory: URL) throws -> RunningProcess {
    let command = ([try ProductRunner.executable("vgpu-migrate").path] + arguments).map { "'\($0)'" }
        .joined(separator: " ")
    return try RunningProcess(
        URL(fileURLWithPath: "/usr/bin/script"), ["-q", "-e", "-c", command, "/dev/null"], directory: directory,
        environment: ["TERM": "xterm"], withInput: true)
}

/// Starts, in the background, `vgpu-migrate migrate VM --from src --to dst` of a new guest with
/// `memoryMiB` that only idles in its firmware, under the policy `slow` (1 MiB/s: even with
/// zero pages compressed the job runs for a long while). The database is
/// DIRECTORY/history.sqlite.
func startCrawlingMigration(_ lab: Lab, vm: String, memoryMiB: Int, in directory: URL) throws
    -> (migration: RunningProcess, inventory: String, database: String, policies: String)
{
    try startLabGuest(lab, name: vm, memoryMiB: memoryMiB)
    let policies = try policiesWith(
        "slow", from: "adaptive", in: directory,
        [("  on_timeout: force-switchover", "  on_timeout: force-switchover\n  bandwidth_mib_per_s: 1")])
    let inventory = try labInventory(lab, in: directory)
    let database = directory.appendingPathComponent("history.sqlite").path
    let migration = try RunningProcess(
        try ProductRunner.executable("vgpu-migrate"),
        [
            "migrate", vm, "--from", "src", "--to", "dst", "--policy", "slow", "--inventory", inventory, "--database",
            database, "--policies", policies,
        ], directory: directory)
    return (migration, inventory, database, policies)
}
