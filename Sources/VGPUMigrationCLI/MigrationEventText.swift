import VGPUCommandSupport
import VGPUMigrationCore
import VGPUMigrationEngine

/// The engine's events as the command line prints them. Lines about the migration `migrate`
/// runs (the one that began in the stream) read plainly; lines about others (what `reconcile`
/// settles, also before a migration) start with the migration's id, and only the running
/// migration's progress is shown.
enum MigrationEventText {
    /// What to print for `event`: a step line, a progress line (redrawn in place on a
    /// terminal), or nothing.
    enum Output: Equatable {
        case line(String)
        case progress(String)
        case nothing
    }

    /// `running`: the migration that began in the stream, if one did.
    static func render(_ event: MigrationRunEvent, running: String?) -> Output {
        let named = { (id: String, text: String) -> Output in
            .line(id == running ? text : "\(id): \(text)")
        }
        switch event {
        case .began(let id, let vm, let source, let destination, let policy):
            return .line("migration \(id): \(vm) \(source) → \(destination), policy \(policy)")
        case .transition(let id, let state, let reason):
            return named(id, "\(state.rawValue): \(reason)")
        case .progress(let id, let sample, let limit):
            return id == running ? .progress(progressLine(sample, limit: limit)) : .nothing
        case .downtimeLimit(let id, let milliseconds, let reason):
            return named(id, "downtime limit \(milliseconds) ms: \(reason)")
        case .aborting(let id, let reason):
            return named(id, "aborting: \(reason)")
        case .watching(let id, let policy, let found):
            return .line(
                "\(id): its migration job is still running; watching it"
                    + (found ? " under policy \(policy)" : " (policy \(policy) not found: no new limits)"))
        case .leftToCoordinator(let id, let state, let seconds):
            return .line("\(id): \(state.rawValue), updated \(seconds) s ago; left to its coordinator")
        case .settled(let id, let state, let reason):
            return .line("\(id): \(state.rawValue) (\(reason))")
        case .hostUnreachable(let host, let message):
            return .line("\(host) does not answer: \(message)")
        case .historyStoreUnavailable(let id, let message, let journal):
            return named(
                id,
                "the history store cannot be written (\(message)); the migration goes on and its record is kept in "
                    + (journal.map { "the local journal \($0)" } ?? "memory only (no journal)"))
        case .historyStoreBack(let id):
            return named(id, "the history store takes the record again")
        case .notice(let id, let text):
            return named(id, text)
        case .paused(_, let point):
            return .line("paused at \(point) (\(MigrateCommand.pauseVariable))")
        }
    }

    /// How much of the job's data is sent, 0 to 100.
    static func percentSent(_ sample: JobSample) -> Int {
        let total = sample.dataTotalBytes ?? 0
        return total > 0 ? min(100, Int(Double(sample.dataProcessedBytes ?? 0) / Double(total) * 100)) : 0
    }

    /// One progress line: phase, transferred, remaining, rate, dirty rate, iteration, limit, elapsed.
    static func progressLine(_ sample: JobSample, limit: Int) -> String {
        let percent = percentSent(sample)
        let iteration = sample.iteration ?? 0
        let phase = iteration <= 1 ? "first pass" : "pass \(iteration)"
        let dirty = sample.dirtyBytesPerSecond.map { "\($0 >> 20) MiB/s" } ?? "-"
        return
            "migrating (\(phase))  \(percent)% sent  remaining \((sample.dataRemainingBytes ?? 0) >> 20) MiB"
            + "  rate \((sample.memoryBytesPerSecond ?? 0) >> 20) MiB/s  dirty \(dirty)"
            + (sample.vfioDataTransferredBytes.map { "  VFIO \(byteSizeText($0))" } ?? "")
            + "  limit \(limit) ms  elapsed \(sample.elapsedMilliseconds / 1000) s"
    }

    /// Runs `body` with a sink whose events are printed on `display` as they come; returns (or
    /// throws) once every event `body` sent is printed.
    static func showing<Value>(
        on display: ProgressDisplay, _ body: (MigrationEventSink) async throws -> Value
    ) async throws -> Value {
        let (events, continuation) = MigrationRunEvent.stream()
        async let rendering: Void = show(events, on: display)
        let outcome: Result<Value, any Error>
        do {
            outcome = .success(try await body(MigrationEventSink(continuation)))
        } catch {
            outcome = .failure(error)
        }
        continuation.finish()
        await rendering
        return try outcome.get()
    }

    /// Renders every event of `events` to `display` until the stream ends.
    private static func show(_ events: AsyncStream<MigrationRunEvent>, on display: ProgressDisplay) async {
        var running: String?
        for await event in events {
            if case .began(let id, _, _, _, _) = event { running = id }
            switch render(event, running: running) {
            case .line(let text): display.line(text)
            case .progress(let text): display.progress(text)
            case .nothing: break
            }
        }
    }
}

extension CommandFailure {
    /// The engine's error with the project's exit code for its kind.
    init(_ error: MigrationEngineError) {
        let code: Int32 =
            switch error.kind {
            case .failed, .historyStore: CommandFailure.failed
            case .configuration: CommandFailure.usageOrConfiguration
            case .unreachable: CommandFailure.unreachable
            }
        self.init(error.message, remedy: error.remedy, exitCode: code)
    }
}
