/// What the controller wants done after a job sample.
package enum DowntimeDecision: Sendable, Hashable {
    case keep
    /// Set the downtime limit to this many milliseconds.
    case raise(milliseconds: Int, reason: String)
    /// Out of time: raise the limit to the cap so QEMU switches over now.
    case forceSwitchover(milliseconds: Int, reason: String)
    /// Give up: abort the job, the guest stays on the source.
    case abort(reason: String)
}

/// Applies a policy's downtime schedule and timeouts to a running migration, one job sample at
/// a time. Pure: the caller reads the statistics and carries out the decision.
package struct DowntimeController: Sendable {
    package let policy: MigrationPolicy
    /// Guest memory and vGPU framebuffer, for Nova's data size and the completion timeout.
    package let memoryBytes: UInt64
    package let framebufferBytes: UInt64
    /// Framebuffer that can only move while the guest is paused (no dirty-page tracking).
    package let untrackedFramebufferBytes: UInt64
    /// The limit in force.
    package private(set) var currentMilliseconds: Int
    private var novaStep = 0
    private var lastRemaining: UInt64?
    private var lastIteration: UInt64?
    private var stalledIterations = 0
    private var bestRemaining: UInt64?
    private var lastProgressSeconds = 0.0
    private var forced = false

    package init(
        policy: MigrationPolicy, memoryBytes: UInt64, framebufferBytes: UInt64, untrackedFramebufferBytes: UInt64
    ) {
        self.policy = policy
        self.memoryBytes = memoryBytes
        self.framebufferBytes = framebufferBytes
        self.untrackedFramebufferBytes = untrackedFramebufferBytes
        self.currentMilliseconds = min(policy.schedule.initialMilliseconds, policy.checks.maxDowntimeMilliseconds)
        if case .nova = policy.schedule { novaStep = 1 }
    }

    private var cap: Int { policy.checks.maxDowntimeMilliseconds }

    /// Seconds allowed in all before the completion timeout.
    package var completionTimeoutSeconds: Double {
        policy.completionTimeoutSecondsPerGiB * max(1, Double(memoryBytes + framebufferBytes) / 1_073_741_824)
    }

    /// Looks at one sample taken `elapsedSeconds` after the start.
    package mutating func decide(elapsedSeconds: Double, sample: JobSample) -> DowntimeDecision {
        let remaining = sample.dataRemainingBytes
        if let remaining, remaining < (bestRemaining ?? .max) {
            bestRemaining = remaining
            lastProgressSeconds = elapsedSeconds
        }
        if !forced {
            if elapsedSeconds >= completionTimeoutSeconds {
                return timeout("completion timeout: \(Int(completionTimeoutSeconds)) s passed")
            }
            if elapsedSeconds - lastProgressSeconds >= policy.progressTimeoutSeconds {
                return timeout(
                    "progress timeout: the remaining data has not gone down for \(Int(policy.progressTimeoutSeconds)) s"
                )
            }
        }
        defer {
            lastRemaining = remaining ?? lastRemaining
            lastIteration = sample.iteration ?? lastIteration
        }
        switch policy.schedule {
        case .fixed:
            return .keep
        case .nova(let downtime, let steps, let delay):
            let planned = NovaSteps.steps(
                downtimeMilliseconds: downtime, steps: steps, delaySecondsPerGiB: delay,
                memoryGiB: Double(memoryBytes) / 1_073_741_824)
            var decision = DowntimeDecision.keep
            while novaStep < planned.count, elapsedSeconds >= Double(planned[novaStep].seconds) {
                decision = raise(
                    planned[novaStep].milliseconds,
                    "nova step \(novaStep) of \(steps) at \(planned[novaStep].seconds) s")
                novaStep += 1
            }
            return decision
        case .doubling:
            if let remaining, let last = lastRemaining, remaining > last {
                return raise(currentMilliseconds * 2, "remaining data grew from \(mib(last)) to \(mib(remaining)) MiB")
            }
            return .keep
        case .stalledIterations(let steps, let abortAfter):
            if let iteration = sample.iteration, iteration != lastIteration, lastIteration != nil {
                if let remaining, let last = lastRemaining, remaining >= last {
                    stalledIterations += 1
                } else {
                    stalledIterations = 0
                }
                if stalledIterations >= abortAfter {
                    return .abort(reason: "\(stalledIterations) iterations without progress")
                }
                if let step = steps.last(where: { $0.stalledIterations <= stalledIterations }) {
                    return raise(
                        step.milliseconds, "\(stalledIterations) stalled iteration\(stalledIterations == 1 ? "" : "s")")
                }
            }
            return .keep
        case .adaptive(_, let margin):
            guard let remaining, let rate = sample.memoryBytesPerSecond, rate > 0 else { return .keep }
            // During the first pass the remaining data is memory not sent yet, not what the guest
            // dirties: a limit set from it would trade downtime for nothing.
            guard let iteration = sample.iteration, iteration >= 2 else { return .keep }
            // A guest that dirties less than half of what the link sends converges under the
            // limit in force; only a framebuffer that moves while paused needs a higher one.
            // Without a dirty rate, remaining data that shrinks says the same (one sample is
            // not enough to tell).
            if untrackedFramebufferBytes == 0 {
                let converging =
                    sample.dirtyBytesPerSecond.map { $0 * 2 < rate }
                    ?? lastRemaining.map { remaining < $0 } ?? true
                if converging { return .keep }
            }
            let neededSeconds = Double(remaining + untrackedFramebufferBytes) / Double(rate)
            let target = Int((neededSeconds * 1000 * margin).rounded(.up))
            guard target > currentMilliseconds, target <= cap else { return .keep }
            return raise(
                target,
                "needs \(Int(neededSeconds * 1000)) ms: \(mib(remaining)) MiB remaining"
                    + (untrackedFramebufferBytes > 0
                        ? " + \(mib(untrackedFramebufferBytes)) MiB untracked framebuffer" : "")
                    + " at \(mib(rate)) MiB/s, +\(Int(((margin - 1) * 100).rounded()))%")
        }
    }

    /// Guest page size for QEMU's dirty-page rate (x86).

    private mutating func raise(_ milliseconds: Int, _ reason: String) -> DowntimeDecision {
        let value = min(milliseconds, cap)
        guard value > currentMilliseconds else { return .keep }
        currentMilliseconds = value
        return .raise(milliseconds: value, reason: reason)
    }

    private mutating func timeout(_ reason: String) -> DowntimeDecision {
        switch policy.onTimeout {
        case .abort:
            return .abort(reason: reason)
        case .forceSwitchover:
            forced = true
            currentMilliseconds = cap
            return .forceSwitchover(milliseconds: cap, reason: "\(reason); raising the limit to the cap to switch over")
        }
    }

    private func mib(_ bytes: UInt64) -> UInt64 { bytes / 1_048_576 }
}
