// Benchmark: `history --limit 50` over a SQLite history of N records (default 1,000,000), with and
// without filters. Prints, from one run, the median of the store query in-process and of the
// whole `vgpu-migrate history` command, each next to the 20 ms target.
import Foundation
import GRDB
import VGPUMigrationCore
import VGPUMigrationStorage

let arguments = CommandLine.arguments
let count = arguments.count > 1 ? Int(arguments[1]) ?? 1_000_000 : 1_000_000
let repeats = arguments.count > 2 ? Int(arguments[2]) ?? 21 : 21
let binary = arguments.count > 3 ? arguments[3] : ".build/release/vgpu-migrate"
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-history-bench-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }
let path = directory.appendingPathComponent("history.sqlite").path

// The schema, as the store creates it.
let store = try SQLiteHistoryStore(path: path)

print("filling \(count) records…")
let fillStart = Date()
let pool = try DatabasePool(path: path)
let start = 1_764_000_000.0
let states = ["completed", "completed", "completed", "completed", "failed", "cancelled", "completed", "completed"]
try await pool.write { db in
    let statement = try db.makeStatement(
        sql: """
            INSERT INTO migrations (id, vm, source, destination, status, policy, downtime_ms, duration_s, created_at,
                updated_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
    for index in 0..<count {
        let id = String(format: "%08x-0000-4000-8000-%012x", index, index)
        let vm = "vm-\(index % 1000)"
        let source = "gpu-\(index % 50)"
        let destination = "gpu-\((index + 7) % 50)"
        let created = start + Double(index) * 30
        let status = states[index % states.count]
        let record =
            #"{"created_at":\#(created - 978_307_200),"destination":"\#(destination)","downtime_steps":[],"events":[],"findings":[],"id":"\#(id)","intents":[],"policy":"adaptive","sample_count":0,"samples":[],"source":"\#(source)","state":"\#(status)","updated_at":\#(created + 40 - 978_307_200),"vm":"\#(vm)"}"#
        try statement.execute(arguments: [
            id, vm, source, destination, status, "adaptive", index % 3000, 40.0, created, created + 40, record,
        ])
    }
}
try await pool.write { db in try db.execute(sql: "ANALYZE") }
print(String(format: "filled in %.1f s", Date().timeIntervalSince(fillStart)))

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

struct CommandFailed: Error, CustomStringConvertible {
    var description: String
}

/// Runs `binary` with `arguments` (standard output to /dev/null) and returns the wall time from
/// posix_spawn to waitpid. Spawning directly keeps Foundation's Process (its pipes, its run loop
/// waiting for the child) out of what is measured.
func millisecondsToRun(_ binary: String, _ arguments: [String]) throws -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let argv: [UnsafeMutablePointer<CChar>?] = ([binary] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var child: pid_t = 0
    let t0 = DispatchTime.now().uptimeNanoseconds
    let spawned = posix_spawn(&child, binary, &actions, nil, argv, environ)
    guard spawned == 0 else { throw CommandFailed(description: "cannot start \(binary): errno \(spawned)") }
    var status: Int32 = 0
    while waitpid(child, &status, 0) == -1 && errno == EINTR {}
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
    guard status == 0 else {
        throw CommandFailed(description: "\(binary) \(arguments.joined(separator: " ")) ended with status \(status)")
    }
    return elapsed
}

let filters: [(String, HistoryFilter, [String])] = [
    ("no filter", HistoryFilter(limit: 50), []),
    ("--vm", HistoryFilter(vm: "vm-417", limit: 50), ["--vm", "vm-417"]),
    ("--host", HistoryFilter(host: "gpu-12", limit: 50), ["--host", "gpu-12"]),
    ("--status failed", HistoryFilter(state: .failed, limit: 50), ["--status", "failed"]),
    (
        "--since 30d",
        HistoryFilter(since: Date(timeIntervalSince1970: start + Double(count) * 30 - 30 * 86_400), limit: 50),
        ["--since", "2026-01-01"]
    ),
    (
        "--vm --host --status", HistoryFilter(vm: "vm-417", host: "gpu-17", state: .completed, limit: 50),
        ["--vm", "vm-417", "--host", "gpu-17", "--status", "completed"]
    ),
]

print("")
print("query (median of \(repeats))        in-process   ratio to 20 ms   whole command   ratio to 20 ms   rows")
for (label, filter, flags) in filters {
    var inProcess: [Double] = []
    var rows = 0
    for _ in 0..<repeats {
        let t0 = DispatchTime.now().uptimeNanoseconds
        rows = try await store.list(filter).count
        inProcess.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    var command: [Double] = []
    for _ in 0..<repeats {
        command.append(try millisecondsToRun(binary, ["history", "--database", path] + flags))
    }
    let a = median(inProcess)
    let b = median(command)
    print(
        label.padding(toLength: 30, withPad: " ", startingAt: 0)
            + String(format: "%9.2f ms   %14.2f   %10.2f ms   %14.2f   %4d", a, a / 20, b, b / 20, rows))
}

// What starting the command costs with no query at all, for reading the command column.
var startOnly: [Double] = []
for _ in 0..<repeats {
    startOnly.append(try millisecondsToRun(binary, ["--version"]))
}

print("")
print(
    String(
        format: "process start alone (vgpu-migrate --version, measured after the rows above): %.2f ms (median)",
        median(startOnly)))
