import ArgumentParser
import Foundation
import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine
import VGPUMigrationStorage

/// Where the history is: `--database`, else `$VGPU_MIGRATE_DATABASE`, else the default SQLite
/// file (`/var/lib/vgpu-migrate/history.sqlite` for root, `~/.local/share/vgpu-migrate/history.sqlite`
/// for other users, honouring `$XDG_DATA_HOME`).
struct DatabaseOption: ParsableArguments {
    @Option(
        name: .customLong("database"),
        help: ArgumentHelp("History store: a SQLite file path or postgres://user@host:port/db URL.", valueName: "url"))
    var database: String?

    /// Where the history is: --database, else $VGPU_MIGRATE_DATABASE, else the settings file's
    /// `database`, else a SQLite file at the default path.
    func location() throws(CommandFailure) -> String {
        if let database { return database }
        if let fromEnvironment = ProcessInfo.processInfo.environment["VGPU_MIGRATE_DATABASE"], !fromEnvironment.isEmpty
        {
            return fromEnvironment
        }
        if let configured = try CoordinatorSettings.current()?.database { return configured }
        if getuid() == 0 { return "/var/lib/vgpu-migrate/history.sqlite" }
        let base =
            ProcessInfo.processInfo.environment["XDG_DATA_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share")
        return base.appendingPathComponent("vgpu-migrate/history.sqlite").path
    }

    /// The migration `id` (or a unique prefix of it) names in `store`.
    func migration(_ id: String, in store: any HistoryStore) async throws(CommandFailure) -> MigrationRecord {
        let record: MigrationRecord?
        do {
            record = try await store.record(id: id.lowercased())
        } catch {
            throw CommandFailure("\(error)", exitCode: CommandFailure.failed)
        }
        guard let record else {
            throw CommandFailure(
                "no migration \(id) in \((try? location()) ?? "the history")",
                remedy: "list them with 'vgpu-migrate history'")
        }
        return record
    }

    /// The history store. `forReadingOnly` for commands that only read it (see
    /// `SQLiteHistoryStore.init(path:forReadingOnly:)`). Records the local journal kept while
    /// the store could not be written go into it first (a note on standard error says so).
    func open(forReadingOnly: Bool = false) async throws(CommandFailure) -> any HistoryStore {
        let store = try await openStore(forReadingOnly: forReadingOnly)
        await replayJournal(into: forReadingOnly ? nil : store)
        return store
    }

    /// The local journal of this history: where records wait while it cannot be written.
    func journal() throws(CommandFailure) -> DirectoryRecordJournal {
        DirectoryRecordJournal(
            root: DirectoryRecordJournal.defaultRoot(), storeLocation: try historyLocation().journalKey)
    }

    /// ``location()`` read as a SQLite file or a PostgreSQL URL.
    func historyLocation() throws(CommandFailure) -> HistoryLocation {
        HistoryLocation(try location())
    }

    private func openStore(forReadingOnly: Bool) async throws(CommandFailure) -> any HistoryStore {
        let location = try historyLocation()
        do {
            switch location {
            case .postgres(let url): return try await PostgresHistoryStore.open(url: url)
            case .sqlite(let path): return try SQLiteHistoryStore(path: path, forReadingOnly: forReadingOnly)
            }
        } catch {
            let unreachable = if case .postgres = location { true } else { false }
            throw CommandFailure(
                "\(error)", remedy: "check --database (a SQLite path or a postgres:// URL)",
                exitCode: unreachable ? CommandFailure.unreachable : CommandFailure.failed)
        }
    }

    /// Writes what the journal kept into the history (`store`, or one opened for writing).
    private func replayJournal(into store: (any HistoryStore)?) async {
        guard let journal = try? journal(), let kept = try? journal.records(), !kept.isEmpty else { return }
        var target = store
        if target == nil { target = try? await openStore(forReadingOnly: false) }
        guard let target else {
            CommandRunner.writeStandardError(
                "note: \(kept.count) migration record(s) wait in the local journal \(journal.location); they go "
                    + "into the history once it can be written")
            return
        }
        for outcome in await JournalReplay.replay(kept, from: journal, into: target, at: Date()) {
            CommandRunner.writeStandardError("note: migration \(outcome.migration): \(outcome.message)")
        }
    }
}

/// Where a history is: a SQLite file (a path, or `sqlite:PATH`) or a PostgreSQL server
/// (`postgres://` or `postgresql://`).
enum HistoryLocation {
    case sqlite(path: String)
    case postgres(url: String)

    init(_ text: String) {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text)
        } else {
            self = .sqlite(path: text.hasPrefix("sqlite:") ? String(text.dropFirst("sqlite:".count)) : text)
        }
    }

    /// The location as the local journal names it: a PostgreSQL URL without its password, a
    /// SQLite file's absolute path.
    var journalKey: String {
        switch self {
        case .postgres(let text):
            guard var url = URLComponents(string: text) else { return text }
            url.password = nil
            url.query = nil
            url.scheme = "postgres"
            return url.string ?? text
        case .sqlite(let path):
            return URL(fileURLWithPath: path).standardizedFileURL.path
        }
    }

    /// Whether a history may be there: a SQLite file that exists, or any PostgreSQL server.
    var mayExist: Bool {
        switch self {
        case .postgres: true
        case .sqlite(let path): FileManager.default.fileExists(atPath: path)
        }
    }
}

/// `vgpu-migrate history`: the migrations, newest first.
struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "List migrations, newest first.",
        discussion: """
            --since takes a time (2026-11-25, 2026-11-25T10:00:00Z) or an age (30m, 12h, 7d). --host matches \
            the source or the destination. --json prints the rows as a JSON array (documented in docs/history.md).
            """
    )

    @OptionGroup var database: DatabaseOption

    @Option(help: ArgumentHelp("Only this VM.", valueName: "name")) var vm: String?
    @Option(help: ArgumentHelp("Only migrations from or to this host.", valueName: "host")) var host: String?
    @Option(help: ArgumentHelp("Only this status.", valueName: "status")) var status: String?
    @Option(help: ArgumentHelp("Only migrations started since.", valueName: "time|age")) var since: String?
    @Option(help: "At most this many rows (1 to 10000).") var limit = 50
    @Flag(name: .customLong("drains"), help: "List drains instead ('show ID' shows one with its migrations).")
    var drains = false
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false

    func validate() throws {
        if !(1...10_000).contains(limit) { throw ValidationError("--limit must be between 1 and 10000") }
        if drains && (vm != nil || host != nil || status != nil || since != nil) {
            throw ValidationError("--drains lists the newest drains; it takes only --limit and --json")
        }
        if let status, MigrationState(rawValue: status) == nil {
            let names = MigrationState.allCases.map(\.rawValue).joined(separator: ", ")
            throw ValidationError("--status must be one of: \(names)")
        }
        if let since, Self.parseSince(since, now: Date()) == nil {
            throw ValidationError(
                "--since takes a time such as 2026-11-25T10:00:00Z or an age such as 12h, not '\(since)'")
        }
    }

    static func parseSince(_ text: String, now: Date) -> Date? {
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0 {
            let seconds: Double? = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800][String(unit)]
            if let seconds { return now.addingTimeInterval(-amount * seconds) }
        }
        // Foundation's Swift ISO 8601 parser: unlike ISO8601DateFormatter it does not start ICU,
        // which would cost `history` more time than its query. It also takes a date off the
        // front of longer text, so the whole text must have the shape first.
        let characters = Array(text.utf8)
        func shaped(_ pattern: String, from start: Int = 0) -> Bool {
            let expected = Array(pattern.utf8)
            guard characters.count >= start + expected.count else { return false }
            return zip(characters[start...], expected).allSatisfy { actual, wanted in
                wanted == UInt8(ascii: "d")
                    ? (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(actual) : actual == wanted
            }
        }
        if shaped("dddd-dd-ddTdd:dd:dd") {
            var rest = characters.count > 19 && characters[19] == UInt8(ascii: ".") ? 20 : 19
            let fractional = rest == 20
            if fractional {
                let digits = characters[20...].prefix { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }.count
                guard digits > 0 else { return nil }
                rest += digits
            }
            let zones = ["Z", "+dd:dd", "-dd:dd", "+dddd", "-dddd"]
            guard zones.contains(where: { characters.count - rest == $0.utf8.count && shaped($0, from: rest) }) else {
                return nil
            }
            return try? Date.ISO8601FormatStyle(includingFractionalSeconds: fractional).parse(text)
        }
        guard characters.count == 10, shaped("dddd-dd-dd") else { return nil }
        return try? Date.ISO8601FormatStyle().year().month().day().parse(text)
    }

    func run() async throws {
        let store = try await database.open(forReadingOnly: true)
        if drains {
            let found: [DrainRecord]
            do {
                found = try await store.drains(limit: limit)
            } catch {
                throw CommandFailure("\(error)")
            }
            print(json ? try HistoryText.json(found) : HistoryText.drainTable(found), terminator: json ? "\n" : "")
            return
        }
        let filter = HistoryFilter(
            vm: vm, host: host, state: status.flatMap(MigrationState.init(rawValue:)),
            since: since.flatMap { Self.parseSince($0, now: Date()) }, limit: limit)
        let rows: [MigrationSummary]
        do {
            rows = try await store.list(filter)
        } catch {
            throw CommandFailure("\(error)")
        }
        if json {
            print(try HistoryText.json(rows))
        } else {
            print(HistoryText.table(rows), terminator: "")
        }
    }
}

/// `vgpu-migrate show ID`: one migration's whole timeline.
struct ShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract:
            "Show one migration: every transition, downtime step, the final job statistics, findings, reservation.",
        discussion:
            "ID may be shortened to any unique prefix. --json prints the whole record (documented in docs/history.md); "
            + "--svg FILE also draws it."
    )

    @OptionGroup var database: DatabaseOption
    @Argument(help: "Migration id, or a unique prefix of it.") var id: String
    @Flag(name: .customLong("json"), help: "Print JSON.") var json = false
    @Option(
        name: .customLong("svg"),
        help: ArgumentHelp(
            "Also draw the migration as SVG into FILE: data remaining, transfer and dirty rate, downtime limit "
                + "over time, passes, transitions, achieved downtime.", valueName: "file"))
    var svg: String?

    func validate() throws {
        try HistoryText.validateMigrationID(id)
    }

    func run() async throws {
        let store = try await database.open(forReadingOnly: true)
        // A drain's id shows the drain.
        if let drain = try? await store.drain(id: id.lowercased()),
            (try? await store.record(id: id.lowercased())) == nil
        {
            guard svg == nil else {
                throw CommandFailure(
                    "\(drain.id) is a drain: --svg draws one migration", exitCode: CommandFailure.usageOrConfiguration)
            }
            if json {
                print(try HistoryText.json(drain))
            } else {
                print(await HistoryText.drain(drain, migrations: store), terminator: "")
            }
            return
        }
        let record = try await database.migration(id, in: store)
        if let svg {
            do {
                try MigrationChart(record: record).svg.write(
                    to: URL(fileURLWithPath: svg), atomically: true, encoding: .utf8)
            } catch {
                throw CommandFailure(
                    "cannot write the chart to \(svg): \(error.localizedDescription)",
                    exitCode: CommandFailure.usageOrConfiguration)
            }
        }
        if json {
            print(try HistoryText.json(record))
        } else {
            print(HistoryText.timeline(record), terminator: "")
        }
    }
}

/// Renderings of the history.
enum HistoryText {
    /// A migration id or a prefix of one: hex digits and '-', nothing that could be a path.
    static func validateMigrationID(_ id: String, of kind: String = "migration") throws {
        guard !id.isEmpty, id.count <= 36, id.allSatisfy({ $0.isHexDigit || $0 == "-" }) else {
            throw ValidationError("'\(id)' is not a \(kind) id (hex digits and '-')")
        }
    }

    /// `transfer rate mean 250 MiB/s, peak 310 MiB/s; dirty rate peak 180 MiB/s; 4 passes; least
    /// left 12 MiB`, with what the samples reported.
    static func summary(_ summary: JobSampleSummary) -> String {
        var parts: [String] = []
        if let peak = summary.peakMemoryBytesPerSecond, let mean = summary.meanMemoryBytesPerSecond {
            parts.append("transfer rate mean \(Int(mean) >> 20) MiB/s, peak \(peak >> 20) MiB/s")
        }
        // libvirt gives the dirty rate in pages: 4 KiB on x86, as the progress line takes them.
        if let dirty = summary.peakDirtyPagesPerSecond {
            parts.append("dirty rate peak \((dirty * JobSample.pageBytes) >> 20) MiB/s")
        }
        if let passes = summary.passes { parts.append(passes == 1 ? "1 pass" : "\(passes) passes") }
        if let least = summary.leastRemainingBytes { parts.append("least left \(least >> 20) MiB") }
        if let vfio = summary.vfioDataTransferredBytes { parts.append("VFIO device state \(byteSizeText(vfio))") }
        return parts.isEmpty ? "no statistics in them" : parts.joined(separator: "; ")
    }

    /// ` (key=value, ...)`, or nothing for no details.
    static func details(_ details: [String: String]) -> String {
        details.isEmpty
            ? ""
            : " (" + details.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + ")"
    }

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(timestamp(date))
        }
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// `2026-11-25T10:00:00.250Z`: RFC 3339 in UTC to the millisecond, as the JSON output writes
    /// times (the phases of a migration are often milliseconds apart).
    static func timestamp(_ date: Date) -> String {
        let parts = utc(date)
        return parts.day + "T" + parts.clock + "." + parts.milliseconds + "Z"
    }

    /// `2026-11-25 10:00:00`, in UTC, or `2026-11-25 10:00:00.250` with `milliseconds`. Computed
    /// here rather than with a date formatter, which would start ICU: that alone costs `history`
    /// more time than its query.
    static func time(_ date: Date, milliseconds: Bool = false) -> String {
        let parts = utc(date)
        return parts.day + " " + parts.clock + (milliseconds ? "." + parts.milliseconds : "")
    }

    /// The UTC day (`2026-11-25`), time of day (`10:00:00`) and milliseconds (`250`) of `date`,
    /// rounded down to the millisecond.
    private static func utc(_ date: Date) -> (day: String, clock: String, milliseconds: String) {
        let total = Int((date.timeIntervalSince1970 * 1000).rounded(.down))
        let (days, ofDay) = total.quotientAndRemainder(dividingBy: 86_400_000)
        let day = ofDay < 0 ? days - 1 : days
        let millisecond = ofDay < 0 ? ofDay + 86_400_000 : ofDay
        let (year, month, dayOfMonth) = civilDate(daysSince1970: day)
        let second = millisecond / 1000
        let fraction = millisecond % 1000
        return (
            "\(year)-\(two(month))-\(two(dayOfMonth))",
            "\(two(second / 3600)):\(two(second % 3600 / 60)):\(two(second % 60))",
            fraction < 10 ? "00\(fraction)" : fraction < 100 ? "0\(fraction)" : "\(fraction)"
        )
    }

    private static func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }

    /// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's civil_from_days).
    static func civilDate(daysSince1970 days: Int) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// `40.0 s`, `2m05s`, `1h02m` (without Foundation's formatting, which costs the listing more
    /// than its query).
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "-" }
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        if seconds < 59.95 {
            let tenths = Int((seconds * 10).rounded())
            return "\(tenths / 10).\(tenths % 10) s"
        }
        let whole = Int(seconds.rounded())
        if whole < 3600 { return "\(whole / 60)m\(two(whole % 60))s" }
        return "\(whole / 3600)h\(two(whole % 3600 / 60))m"
    }

    static func table(_ rows: [MigrationSummary]) -> String {
        if rows.isEmpty { return "No migrations.\n" }
        var cells = [["ID", "VM", "SOURCE", "DEST", "STATUS", "POLICY", "DOWNTIME", "DURATION", "STARTED", "UPDATED"]]
        for row in rows {
            cells.append([
                String(row.id.prefix(8)), row.vm, row.source, row.destination, row.state.rawValue, row.policy,
                row.downtimeMilliseconds.map { "\($0) ms" } ?? "-", duration(row.durationSeconds), time(row.createdAt),
                time(row.updatedAt),
            ])
        }
        return InventoryReport.table(cells, rightAligned: [6, 7], indent: "")
    }

    /// `history --drains`.
    static func drainTable(_ drains: [DrainRecord]) -> String {
        if drains.isEmpty { return "No drains.\n" }
        var cells = [["ID", "HOST", "STATUS", "MOVED", "STARTED", "UPDATED"]]
        for drain in drains {
            cells.append([
                String(drain.id.prefix(8)), drain.host, drain.state.rawValue,
                "\(drain.moves.filter { $0.state == .moved }.count)/\(drain.moves.count)", time(drain.createdAt),
                time(drain.updatedAt),
            ])
        }
        return InventoryReport.table(cells, rightAligned: [3], indent: "")
    }

    /// `show DRAIN_ID`: the drain, each move, and the migrations made for it.
    static func drain(_ drain: DrainRecord, migrations store: any HistoryStore) async -> String {
        var out = "Drain \(drain.id)\n"
        out += "  host \(drain.host), policy \(drain.policy), \(drain.parallel) at once\n"
        out += "  status \(drain.state.rawValue), started \(time(drain.createdAt)), updated \(time(drain.updatedAt))\n"
        out += "Moves:\n"
        for move in drain.moves {
            out += "  \(move.vm) → \(move.destination ?? "-"): \(move.state.rawValue)"
            out += (move.reason.map { " (\($0))" } ?? "") + "\n"
            for id in move.migrations {
                if let record = try? await store.record(id: id) {
                    out += "    migration \(id): \(record.destination), \(record.state.rawValue)"
                    out += record.downtimeMilliseconds.map { ", downtime \($0) ms" } ?? ""
                    out += ", \(duration(record.durationSeconds))\n"
                } else {
                    out += "    migration \(id): not in the history\n"
                }
            }
        }
        if !drain.plan.skipped.isEmpty {
            out += "Not considered:\n"
            for skipped in drain.plan.skipped { out += "  \(skipped.host): \(skipped.reason)\n" }
        }
        return out
    }

    static func timeline(_ record: MigrationRecord) -> String {
        var out = "Migration \(record.id)\n"
        out += "  VM \(record.vm): \(record.source) → \(record.destination), policy \(record.policy)\n"
        out += "  status \(record.state.rawValue), started \(time(record.createdAt)), updated \(time(record.updatedAt))"
        out += ", duration \(duration(record.durationSeconds))\n"
        out += "\nTimeline:\n"
        if record.events.isEmpty { out += "  (no transition yet)\n" }
        for event in record.events {
            out +=
                "  \(time(event.time, milliseconds: true))  \(event.from.rawValue) → \(event.to.rawValue): \(event.reason)"
            out += details(event.details) + "\n"
        }
        if !record.downtimeSteps.isEmpty {
            out += "\nDowntime steps:\n"
            for step in record.downtimeSteps {
                out += "  \(time(step.time, milliseconds: true))  \(step.milliseconds) ms: \(step.reason)\n"
            }
        }
        if let stats = record.finalStats {
            out += "\nFinal job statistics:\n"
            out += "  elapsed \(duration(Double(stats.elapsedMilliseconds) / 1000))"
            if let downtime = stats.downtimeMilliseconds { out += ", downtime \(downtime) ms" }
            if let processed = stats.dataProcessedBytes { out += ", data processed \(byteSizeText(processed))" }
            if let vfio = stats.vfioDataTransferredBytes { out += ", VFIO device state \(byteSizeText(vfio))" }
            if let iteration = stats.iteration { out += ", iterations \(iteration)" }
            out += "\n"
        }
        if record.sampleCount > 0 {
            out += "  \(record.sampleCount) job samples taken (\(record.samples.count) kept)"
            out += record.sampleSummary.map { ": " + summary($0) } ?? ""
            out += "\n"
        }
        if !record.findings.isEmpty {
            out += "\nPre-flight findings:\n"
            for finding in record.findings {
                out += "  \(finding.severity.rawValue.uppercased())  \(finding.check)  \(finding.message)\n"
            }
        }
        if let reservation = record.reservation {
            out += "\nReservation \(reservation.id) on \(reservation.host): \(reservation.state.rawValue)\n"
            for device in reservation.devices {
                out += "  \(device.id)  \(device.typeID) on \(device.function)\n"
            }
        }
        if !record.intents.isEmpty {
            out += "\nIntents recorded:\n"
            for intent in record.intents {
                out += "  \(time(intent.time, milliseconds: true))  \(intent.action.rawValue)"
                out += details(intent.details) + "\n"
            }
        }
        if let notes = record.notes, !notes.isEmpty {
            out += "\nAbout this record:\n"
            for note in notes { out += "  \(time(note.time, milliseconds: true))  \(note.text)\n" }
        }
        return out
    }
}
