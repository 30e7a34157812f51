import Foundation
import Testing

@testable import VGPUMigrationCore

func policy(_ schedule: DowntimeSchedule, cap: Int, onTimeout: TimeoutAction = .abort, progress: Double = 150)
    -> MigrationPolicy
{
    var checks = CheckPolicy.defaults
    checks.maxDowntimeMilliseconds = cap
    return MigrationPolicy(
        name: "test", checks: checks, schedule: schedule, monitorIntervalMilliseconds: 1000,
        completionTimeoutSecondsPerGiB: 800, progressTimeoutSeconds: progress, onTimeout: onTimeout,
        bandwidthMiBPerSecond: nil)
}

func sample(
    _ elapsed: Double, remainingMiB: UInt64, rateMiB: UInt64 = 100, iteration: UInt64 = 1, dirtyMiB: UInt64? = nil
) -> JobSample {
    JobSample(
        time: Date(timeIntervalSince1970: elapsed), elapsedMilliseconds: UInt64(elapsed * 1000),
        dataRemainingBytes: remainingMiB << 20, memoryBytesPerSecond: rateMiB << 20,
        dirtyPagesPerSecond: dirtyMiB.map { $0 * 256 }, iteration: iteration)
}

@Suite("Downtime controller")
struct DowntimeControllerTests {
    static let gib: UInt64 = 1 << 30

    @Test("nova steps fire at Nova's times, in order, capped by the policy")
    func nova() {
        var controller = DowntimeController(
            policy: policy(.nova(downtimeMilliseconds: 500_000, steps: 3, delaySecondsPerGiB: 3), cap: 500_000),
            memoryBytes: 16 * Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        #expect(controller.currentMilliseconds == 166_666)
        #expect(controller.decide(elapsedSeconds: 47, sample: sample(47, remainingMiB: 9000)) == .keep)
        #expect(
            controller.decide(elapsedSeconds: 48, sample: sample(48, remainingMiB: 8000))
                == .raise(milliseconds: 277_777, reason: "nova step 1 of 3 at 48 s"))
        // A late sample applies every step that came due, ending on the latest.
        #expect(
            controller.decide(elapsedSeconds: 150, sample: sample(150, remainingMiB: 7000))
                == .raise(milliseconds: 500_000, reason: "nova step 3 of 3 at 144 s"))
        #expect(controller.currentMilliseconds == 500_000)
    }

    @Test("adaptive sets what the migration needs now, with the margin, once it fits under the cap")
    func adaptive() {
        var controller = DowntimeController(
            policy: policy(.adaptive(initialMilliseconds: 300, margin: 1.25), cap: 2000),
            memoryBytes: 4 * Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        // First pass: what remains is memory not sent yet, whatever it would need.
        #expect(controller.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 120)) == .keep)
        // 400 MiB at 100 MiB/s needs 4 s: over the cap, wait.
        #expect(
            controller.decide(elapsedSeconds: 2, sample: sample(2, remainingMiB: 400, iteration: 2, dirtyMiB: 90))
                == .keep)
        // 120 MiB at 100 MiB/s needs 1.2 s → 1500 ms with 25 %.
        #expect(
            controller.decide(elapsedSeconds: 3, sample: sample(3, remainingMiB: 120, iteration: 3, dirtyMiB: 90))
                == .raise(milliseconds: 1500, reason: "needs 1200 ms: 120 MiB remaining at 100 MiB/s, +25%"))
        // Never lowered.
        #expect(
            controller.decide(elapsedSeconds: 4, sample: sample(4, remainingMiB: 10, iteration: 4, dirtyMiB: 90))
                == .keep)
    }

    @Test("adaptive leaves a guest that converges by itself at the limit in force (low downtime)")
    func adaptiveConverging() {
        var controller = DowntimeController(
            policy: policy(.adaptive(initialMilliseconds: 300, margin: 1.25), cap: 2000),
            memoryBytes: 4 * Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        // Dirtying 20 MiB/s on a 100 MiB/s link: each pass is a fifth of the one before.
        #expect(
            controller.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 120, iteration: 2, dirtyMiB: 20))
                == .keep)
        // Without a dirty rate, shrinking remaining data says the same.
        var unmeasured = DowntimeController(
            policy: policy(.adaptive(initialMilliseconds: 300, margin: 1.25), cap: 2000),
            memoryBytes: 4 * Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        #expect(unmeasured.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 150, iteration: 2)) == .keep)
        #expect(unmeasured.decide(elapsedSeconds: 2, sample: sample(2, remainingMiB: 120, iteration: 2)) == .keep)
        // ... and growing remaining data says it does not converge.
        #expect(
            unmeasured.decide(elapsedSeconds: 3, sample: sample(3, remainingMiB: 130, iteration: 3))
                == .raise(milliseconds: 1625, reason: "needs 1300 ms: 130 MiB remaining at 100 MiB/s, +25%"))
    }

    @Test("adaptive counts the framebuffer that moves while paused")
    func adaptiveUntracked() {
        var controller = DowntimeController(
            policy: policy(.adaptive(initialMilliseconds: 300, margin: 1.0), cap: 30_000),
            memoryBytes: 4 * Self.gib, framebufferBytes: 2 * Self.gib, untrackedFramebufferBytes: 2 * Self.gib)
        guard
            case .raise(let ms, let reason) = controller.decide(
                elapsedSeconds: 1, sample: sample(1, remainingMiB: 100, rateMiB: 1024, iteration: 2, dirtyMiB: 1))
        else {
            Issue.record("expected a raise")
            return
        }
        #expect(ms == 2098)  // (100 + 2048) MiB at 1024 MiB/s
        #expect(reason.contains("+ 2048 MiB untracked framebuffer"))
    }

    @Test("doubling doubles whenever the remaining data grew")
    func doubling() {
        var controller = DowntimeController(
            policy: policy(.doubling(startMilliseconds: 100), cap: 1000), memoryBytes: Self.gib, framebufferBytes: 0,
            untrackedFramebufferBytes: 0)
        #expect(controller.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 500)) == .keep)
        #expect(controller.decide(elapsedSeconds: 2, sample: sample(2, remainingMiB: 400)) == .keep)
        #expect(
            controller.decide(elapsedSeconds: 3, sample: sample(3, remainingMiB: 450))
                == .raise(milliseconds: 200, reason: "remaining data grew from 400 to 450 MiB"))
        for second in 4...10 {
            _ = controller.decide(
                elapsedSeconds: Double(second), sample: sample(Double(second), remainingMiB: 450 + UInt64(second)))
        }
        #expect(controller.currentMilliseconds == 1000)
    }

    @Test("stalled iterations step up, then abort")
    func stalled() {
        var controller = DowntimeController(
            policy: policy(
                .stalledIterations(
                    steps: [
                        StalledStep(stalledIterations: 1, milliseconds: 150),
                        StalledStep(stalledIterations: 2, milliseconds: 200),
                    ], abortAfter: 3), cap: 500, progress: 10_000),
            memoryBytes: Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        #expect(controller.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 300, iteration: 1)) == .keep)
        #expect(
            controller.decide(elapsedSeconds: 2, sample: sample(2, remainingMiB: 310, iteration: 2))
                == .raise(milliseconds: 150, reason: "1 stalled iteration"))
        #expect(
            controller.decide(elapsedSeconds: 3, sample: sample(3, remainingMiB: 320, iteration: 3))
                == .raise(milliseconds: 200, reason: "2 stalled iterations"))
        #expect(
            controller.decide(elapsedSeconds: 4, sample: sample(4, remainingMiB: 330, iteration: 4))
                == .abort(reason: "3 iterations without progress"))
    }

    @Test("timeouts: abort, or force the switchover at the cap (never pause)")
    func timeouts() {
        var aborting = DowntimeController(
            policy: policy(.fixed(milliseconds: 300), cap: 300, progress: 5), memoryBytes: Self.gib,
            framebufferBytes: 0,
            untrackedFramebufferBytes: 0)
        #expect(aborting.decide(elapsedSeconds: 1, sample: sample(1, remainingMiB: 300)) == .keep)
        #expect(aborting.decide(elapsedSeconds: 4, sample: sample(4, remainingMiB: 310)) == .keep)
        #expect(
            aborting.decide(elapsedSeconds: 6, sample: sample(6, remainingMiB: 305))
                == .abort(reason: "progress timeout: the remaining data has not gone down for 5 s"))
        var forcing = DowntimeController(
            policy: policy(.adaptive(initialMilliseconds: 300, margin: 1.25), cap: 30_000, onTimeout: .forceSwitchover),
            memoryBytes: Self.gib, framebufferBytes: 0, untrackedFramebufferBytes: 0)
        #expect(forcing.completionTimeoutSeconds == 800)
        guard
            case .forceSwitchover(let ms, let reason) = forcing.decide(
                elapsedSeconds: 800, sample: sample(800, remainingMiB: 900, rateMiB: 1))
        else {
            Issue.record("expected a forced switchover")
            return
        }
        #expect(ms == 30_000)
        #expect(reason.hasPrefix("completion timeout: 800 s passed"))
        #expect(forcing.decide(elapsedSeconds: 900, sample: sample(900, remainingMiB: 900, rateMiB: 1)) == .keep)
    }
}
