import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@testable import VGPUMigrationCLI

/// A SQLite history with a few migrations, as the engine would leave it.
func historyDatabase(in directory: URL) async throws -> (path: String, records: [MigrationRecord]) {
    let path = directory.appendingPathComponent("history.sqlite").path
    let store = try SQLiteHistoryStore(path: path)
    let start = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-18
    var records: [MigrationRecord] = []
    for (index, (vm, source, destination, outcome)) in [
        ("vm-t4", "t4-a", "t4-b", MigrationState.completed), ("vm-a100", "a100-1", "a100-2", .failed),
        ("vm-t4", "t4-b", "t4-a", .completed), ("vm-l40s", "l40s-1", "l40s-2", .migrating),
    ].enumerated() {
        let at = start.addingTimeInterval(Double(index) * 3600)
        var record = MigrationRecord(
            id: String(format: "%08x-1111-4000-8000-0000000000%02d", 0xA0 + index, index), vm: vm, source: source,
            destination: destination, policy: "adaptive", at: at)
        record.findings = [CompatibilityFinding("driver.version", .pass, "NVIDIA host driver 550.90.05 on both hosts")]
        try await store.begin(record)
        try record.transition(to: .checking, reason: "pre-flight check", at: at.addingTimeInterval(1))
        if outcome == .failed {
            try record.transition(to: .failed, reason: "driver.version failed", at: at.addingTimeInterval(2))
        } else {
            try record.transition(to: .reserving, reason: "checks passed", at: at.addingTimeInterval(2))
            record.reservation = ReservationReference(
                host: destination, id: "22222222-0000-4000-8000-0000000000\(index)0",
                devices: [
                    ReservedDevice(
                        id: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10", interface: .mdev, typeID: "nvidia-232",
                        function: DeviceAddress("0000:3b:00.0")!, gpu: DeviceAddress("0000:3b:00.0")!)
                ],
                state: .active)
            try record.transition(to: .migrating, reason: "reserved 1 vGPU", at: at.addingTimeInterval(3))
            record.downtimeSteps.append(
                DowntimeStep(
                    time: at.addingTimeInterval(8), milliseconds: 1200,
                    reason: "adaptive: remaining 240 MiB at 200 MiB/s"))
            for (second, rate, remaining) in [(5.0, 180, 2048), (10, 220, 240)] {
                record.record(
                    sample: JobSample(
                        time: at.addingTimeInterval(second), elapsedMilliseconds: UInt64(second * 1000) - 3000,
                        dataRemainingBytes: UInt64(remaining) << 20, memoryBytesPerSecond: UInt64(rate) << 20,
                        dirtyPagesPerSecond: 25_600, iteration: second < 8 ? 1 : 3))
            }
            if outcome == .completed {
                record.finalStats = JobSample(
                    time: at.addingTimeInterval(20), elapsedMilliseconds: 17_000, dataProcessedBytes: 8 << 30,
                    iteration: 5, downtimeMilliseconds: 840, vfioDataTransferredBytes: 3 << 20)
                try record.transition(to: .completing, reason: "switched over", at: at.addingTimeInterval(20))
                try record.transition(
                    to: .completed, reason: "reservation committed, source vGPU released", at: at.addingTimeInterval(21)
                )
            }
        }
        try await store.save(record)
        records.append(record)
    }
    return (path, records)
}

@Suite("vgpu-migrate history and show")
struct HistoryCommandTests {
    @Test("history lists newest first as a table; filters narrow it")
    func table() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, _) = try await historyDatabase(in: directory)
        let outcome = try ProductRunner.run("vgpu-migrate", ["history", "--database", path])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let lines = outcome.standardOutput.split(separator: "\n")
        #expect(
            lines.first?.hasPrefix(
                "ID        VM       SOURCE  DEST    STATUS     POLICY    DOWNTIME  DURATION  STARTED") == true)
        #expect(lines.count == 5)
        #expect(lines[1].hasPrefix("000000a3  vm-l40s  l40s-1  l40s-2  migrating  adaptive"))
        #expect(lines[2].contains("completed  adaptive    840 ms    21.0 s  2026-11-18 "))
        let filtered = try ProductRunner.run(
            "vgpu-migrate",
            ["history", "--database", path, "--vm", "vm-t4", "--host", "t4-a", "--status", "completed", "--limit", "1"])
        #expect(filtered.standardOutput.split(separator: "\n").count == 2)
        #expect(filtered.standardOutput.contains("000000a2  vm-t4"))
        let none = try ProductRunner.run("vgpu-migrate", ["history", "--database", path, "--since", "2h"])
        #expect(none.standardOutput == "No migrations.\n")
    }

    @Test("history --json prints the documented rows")
    func json() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, records) = try await historyDatabase(in: directory)
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["history", "--database", path, "--json", "--since", "2026-11-18"])
        let rows = try #require(
            try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as? [[String: Any]])
        #expect(rows.count == 4)
        let first = try #require(rows.last)
        #expect(first["id"] as? String == records[0].id)
        #expect(first["status"] as? String == "completed")
        #expect(first["downtime_ms"] as? Int == 840)
        #expect(first["duration_s"] as? Double == 21)
        #expect(first["started"] as? String == "2026-11-18T11:06:40.000Z")
        for key in ["vm", "source", "destination", "policy", "updated"] { #expect(first[key] != nil, "\(key)") }
    }

    @Test("show prints the whole timeline; a prefix is enough; --json is the record")
    func show() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, records) = try await historyDatabase(in: directory)
        let outcome = try ProductRunner.run("vgpu-migrate", ["show", "000000a0", "--database", path])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let text = outcome.standardOutput
        #expect(text.contains("Migration \(records[0].id)"))
        #expect(text.contains("VM vm-t4: t4-a → t4-b, policy adaptive"))
        #expect(text.contains("  2026-11-18 11:06:41.000  requested → checking: pre-flight check"))
        #expect(text.contains("completing → completed: reservation committed, source vGPU released"))
        #expect(text.contains("1200 ms: adaptive: remaining 240 MiB at 200 MiB/s"))
        #expect(text.contains("downtime 840 ms, data processed 8.0 GiB, VFIO device state 3.0 MiB, iterations 5"))
        #expect(
            text.contains(
                "  2 job samples taken (2 kept): transfer rate mean 200 MiB/s, peak 220 MiB/s; dirty rate peak 100 MiB/s;"
                    + " 3 passes; least left 240 MiB\n"), "\(text)")
        #expect(text.contains("PASS  driver.version"))
        #expect(text.contains("Reservation 22222222-0000-4000-8000-000000000000 on t4-b: active"))
        let json = try ProductRunner.run("vgpu-migrate", ["show", records[1].id, "--database", path, "--json"])
        let record = try decodedJSON(MigrationRecord.self, from: json.standardOutput)
        #expect(record.state == .failed)
        #expect(record.events.map(\.to) == [.checking, .failed])
    }

    @Test("a record the local journal kept goes into the history with the next command; show prints its notes")
    func journalReplayedOnOpen() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, records) = try await historyDatabase(in: directory)
        // The run of records[3] went on while the history could not be written, and ended.
        var ended = records[3]
        let at = ended.updatedAt
        ended.note(
            "the history store could not be written (disk I/O error); the record was kept in the journal", at: at)
        try ended.transition(to: .completing, reason: "switched over", at: at.addingTimeInterval(5))
        try ended.transition(to: .completed, reason: "VM runs on l40s-2", at: at.addingTimeInterval(6))
        let root = directory.appendingPathComponent("journal")
        let journal = DirectoryRecordJournal(root: root, storeLocation: path)
        try journal.keep(ended)
        let environment = ["VGPU_MIGRATE_JOURNAL": root.path]

        let shown = try ProductRunner.run(
            "vgpu-migrate", ["show", ended.id, "--database", path], environment: environment)
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect(
            shown.standardError
                == "note: migration \(ended.id): written from the local journal into the history (completed)\n")
        #expect(shown.standardOutput.contains("migrating → completing: switched over"), "\(shown.standardOutput)")
        #expect(
            shown.standardOutput.contains(
                "\nAbout this record:\n  2026-11-18 14:06:50.000  the history store could not be written"))
        #expect(
            shown.standardOutput.contains("replayed from the local journal \(journal.location) into the history store"))
        #expect(try journal.records().isEmpty)
        // Nothing left to replay: the next command says nothing more.
        let again = try ProductRunner.run("vgpu-migrate", ["history", "--database", path], environment: environment)
        #expect(again.status == 0 && again.standardError.isEmpty, "\(again.standardError)")
        #expect(again.standardOutput.contains("completed"))
    }

    @Test("show --svg draws the migration into a file that reads as SVG; an unwritable path is exit 2")
    func svg() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, records) = try await historyDatabase(in: directory)
        let file = directory.appendingPathComponent("chart.svg")
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["show", "000000a0", "--database", path, "--svg", file.path])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        #expect(outcome.standardOutput.contains("Migration \(records[0].id)"))
        let svg = try String(contentsOf: file, encoding: .utf8)
        #expect(svg == MigrationChart(record: records[0]).svg)
        #expect(try XMLReader.parseDocument(svg).root.name == "svg")
        let refused = try ProductRunner.run(
            "vgpu-migrate", ["show", "000000a0", "--database", path, "--svg", "/nonexistent/chart.svg"])
        #expect(
            refused.status == 2 && refused.standardError.contains("cannot write the chart to /nonexistent/chart.svg"))
    }

    @Test(
        "bad input: clear errors and non-zero exits",
        arguments: [
            (["history", "--status", "done"], Int32(2), "--status must be one of"),
            (["history", "--since", "yesterday"], 2, "--since takes a time"),
            (["history", "--limit", "0"], 2, "--limit must be between 1 and 10000"),
            (["show", "../../etc"], 2, "is not a migration id"),
            (["show", "ffff"], 1, "no migration ffff"),
            (["show", "000000"], 1, "matches several migrations"),
        ])
    func badInput(arguments: [String], status: Int32, fragment: String) async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let (path, _) = try await historyDatabase(in: directory)
        let outcome = try ProductRunner.run("vgpu-migrate", arguments + ["--database", path])
        #expect(outcome.status == status)
        #expect(outcome.standardError.contains(fragment), "\(outcome.standardError)")
    }

    @Test("table times are UTC and match Foundation's ISO 8601 formatter, before 1970 and across leap days too")
    func times() {
        let reference = ISO8601DateFormatter()
        reference.formatOptions = [.withFullDate, .withTime, .withColonSeparatorInTime, .withSpaceBetweenDateAndTime]
        var seconds: [Double] = [
            0, -1, -86_400, 951_782_400, 951_868_799.9, 1_795_000_000, 4_107_542_400, -2_208_988_800,
        ]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            seconds.append(Double(Int64.random(in: -5_000_000_000...8_000_000_000, using: &generator)))
        }
        for value in seconds {
            let date = Date(timeIntervalSince1970: value)
            #expect(HistoryText.time(date) == reference.string(from: date), "\(value)")
        }
        #expect(HistoryText.time(Date(timeIntervalSince1970: 951_782_400)) == "2000-02-29 00:00:00")
    }

    @Test("JSON times are RFC 3339 to the millisecond, rounded down, and read back by Foundation's parser")
    func timestamps() throws {
        let reference = ISO8601DateFormatter()
        var generator = SystemRandomNumberGenerator()
        var milliseconds: [Int64] = [0, -1, 1, 999, 1000, -86_400_000, 951_868_799_999, 1_795_000_000_250]
        for _ in 0..<2000 {
            milliseconds.append(Int64.random(in: -5_000_000_000_000...8_000_000_000_000, using: &generator))
        }
        for value in milliseconds {
            // 0.6 ms past the mark: the text must not round up to the next millisecond.
            let date = Date(timeIntervalSince1970: (Double(value) + 0.6) / 1000)
            let (seconds, fraction) = value.quotientAndRemainder(dividingBy: 1000)
            let whole = fraction < 0 ? seconds - 1 : seconds
            let digits = String(fraction < 0 ? fraction + 1000 : fraction)
            let expected =
                reference.string(from: Date(timeIntervalSince1970: Double(whole))).dropLast()
                + "." + String(repeating: "0", count: 3 - digits.count) + digits + "Z"
            let text = HistoryText.timestamp(date)
            #expect(text == expected, "\(value)")
            let parsed = try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)
            #expect(abs(parsed.timeIntervalSince1970 * 1000 - Double(value)) < 0.5, "\(value)")
        }
        #expect(
            HistoryText.time(Date(timeIntervalSince1970: 1_795_000_000.25), milliseconds: true)
                == "2026-11-18 11:06:40.250")
    }

    @Test(
        "durations read in seconds (one decimal) under a minute, then minutes and seconds, then hours and minutes",
        arguments: [
            (0.0, "0.0 s"), (0.04, "0.0 s"), (2.25, "2.3 s"), (40, "40.0 s"), (59.94, "59.9 s"), (59.97, "1m00s"),
            (60, "1m00s"), (125.4, "2m05s"), (125.6, "2m06s"), (3599.4, "59m59s"), (3599.6, "1h00m"),
            (3720, "1h02m"), (90_000, "25h00m"), (-1, "-"), (.nan, "-"), (.infinity, "-"),
        ])
    func durations(seconds: Double, shown: String) {
        #expect(HistoryText.duration(seconds) == shown)
    }

    @Test("--since takes an age, a date and time with a zone, or a day")
    func since() throws {
        let now = Date(timeIntervalSince1970: 1_795_000_000)
        #expect(HistoryCommand.parseSince("12h", now: now) == now.addingTimeInterval(-43_200))
        #expect(HistoryCommand.parseSince("2w", now: now) == now.addingTimeInterval(-1_209_600))
        #expect(
            HistoryCommand.parseSince("2026-11-25T10:00:00Z", now: now) == Date(timeIntervalSince1970: 1_795_600_800))
        #expect(
            HistoryCommand.parseSince("2026-11-25T11:30:00+01:30", now: now)
                == Date(timeIntervalSince1970: 1_795_600_800))
        #expect(
            HistoryCommand.parseSince("2026-11-25T10:00:00.250Z", now: now)
                == Date(timeIntervalSince1970: 1_795_600_800.25))
        #expect(
            HistoryCommand.parseSince("2026-11-25T09:00:00-0100", now: now)
                == Date(timeIntervalSince1970: 1_795_600_800))
        #expect(HistoryCommand.parseSince("2026-11-25", now: now) == Date(timeIntervalSince1970: 1_795_564_800))
        for bad in [
            "yesterday", "2026-13-01", "2026-11-25T10:00:00.Z", "2026-11-25T10:00:00+1:00", "2026-11-25T10:00:00",
            "2026-1-25", "2026-11-25T10:00", "2026-11-25T10:00:00Zjunk", "2026-11-25 junk", "12x", "-3h",
            "",
        ] {
            #expect(HistoryCommand.parseSince(bad, now: now) == nil, "\(bad)")
        }
    }

    @Test("an unreachable PostgreSQL history exits 3")
    func postgresDown() throws {
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["history", "--database", "postgres://nobody@127.0.0.1:1/none"])
        #expect(outcome.status == 3)
        #expect(outcome.standardError.contains("the history store is not available"))
    }
}

@Suite("Byte sizes as show prints them")
struct ByteSizeTextTests {
    @Test(
        "bytes, KiB, MiB and GiB with one decimal below 100",
        arguments: [
            (UInt64(0), "0 B"), (96, "96 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (640_063, "625 KiB"),
            (34_080_768, "32.5 MiB"), (3 << 20, "3.0 MiB"), (200 << 20, "200 MiB"), (8 << 30, "8.0 GiB"),
        ])
    func sizes(bytes: UInt64, text: String) {
        #expect(byteSizeText(bytes) == text)
    }
}
