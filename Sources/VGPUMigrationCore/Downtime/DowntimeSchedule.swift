/// How a policy raises the allowed downtime while a migration runs.
package enum DowntimeSchedule: Sendable, Hashable {
    /// One limit for the whole migration.
    case fixed(milliseconds: Int)
    /// Nova's `live_migration_downtime` D, `_steps` S, `_delay` T (s per GiB): step i (0…S) at
    /// `t = T × data_gb × i` sets `D/S + (D − D/S)/S × i`, with `data_gb = max(2, RAM GiB)`.
    case nova(downtimeMilliseconds: Int, steps: Int, delaySecondsPerGiB: Double)
    /// oVirt: limits keyed on iterations without progress; abort after `abortAfter` of them. Starts
    /// at 100 ms (or just below the first step).
    case stalledIterations(steps: [StalledStep], abortAfter: Int)
    /// Proxmox: start low, double whenever the remaining data grew since the last sample.
    case doubling(startMilliseconds: Int)
    /// Ours: from live statistics, the downtime the migration needs now (remaining data ÷
    /// transfer rate, plus any framebuffer that moves while paused), set with a margin as soon
    /// as it is within the cap.
    case adaptive(initialMilliseconds: Int, margin: Double)

    /// The schedule's name in policy files and output.
    package var kind: String {
        switch self {
        case .fixed: "fixed"
        case .nova: "nova"
        case .stalledIterations: "stalled-iterations"
        case .doubling: "doubling"
        case .adaptive: "adaptive"
        }
    }

    /// The limit set before the migration starts.
    package var initialMilliseconds: Int {
        switch self {
        case .fixed(let ms): ms
        case .nova(let d, let s, _):
            NovaSteps.steps(downtimeMilliseconds: d, steps: s, delaySecondsPerGiB: 0, memoryGiB: 2)[0].milliseconds
        // Below the first step, so that the first stalled iteration raises it.
        case .stalledIterations(let steps, _): min(100, (steps.first?.milliseconds ?? 101) - 1)
        case .doubling(let start): start
        case .adaptive(let initial, _): initial
        }
    }
}

/// One step of the stalled-iterations schedule.
package struct StalledStep: Sendable, Hashable {
    /// Iterations without progress after which the step applies.
    package var stalledIterations: Int
    package var milliseconds: Int

    package init(stalledIterations: Int, milliseconds: Int) {
        self.stalledIterations = stalledIterations
        self.milliseconds = milliseconds
    }
}

/// Nova's downtime steps, exactly as `nova.virt.libvirt.migration.downtime_steps` computes them.
package enum NovaSteps {
    /// (seconds after the start, limit in ms) for each of the `steps + 1` steps.
    package static func steps(downtimeMilliseconds: Int, steps: Int, delaySecondsPerGiB: Double, memoryGiB: Double)
        -> [(seconds: Int, milliseconds: Int)]
    {
        let dataGB = max(2, Int(memoryGiB.rounded(.up)))
        let delay = Int(delaySecondsPerGiB * Double(dataGB))
        let base = Double(downtimeMilliseconds) / Double(steps)
        let offset = (Double(downtimeMilliseconds) - base) / Double(steps)
        return (0...steps).map { i in (delay * i, Int(base + offset * Double(i))) }
    }
}

/// What to do when a migration runs out of time (completion or progress timeout).
package enum TimeoutAction: String, Sendable, Hashable, CaseIterable {
    /// Abort the job: the VM stays on the source.
    case abort
    /// Raise the limit to the policy cap so QEMU switches over (never pause a vGPU guest: the
    /// device keeps dirtying memory).
    case forceSwitchover = "force-switchover"
}

/// Everything a policy says about running a migration.
package struct MigrationPolicy: Sendable, Hashable {
    package var name: String
    package var checks: CheckPolicy
    package var schedule: DowntimeSchedule
    /// How often job statistics are read, in milliseconds.
    package var monitorIntervalMilliseconds: Int
    /// Seconds per GiB of guest memory (plus framebuffer) before the completion timeout.
    package var completionTimeoutSecondsPerGiB: Double
    /// Seconds without a decrease of the remaining data before the progress timeout.
    package var progressTimeoutSeconds: Double
    package var onTimeout: TimeoutAction
    /// libvirt migration bandwidth limit in MiB/s; nil leaves it unlimited.
    package var bandwidthMiBPerSecond: Int?

    package init(
        name: String, checks: CheckPolicy, schedule: DowntimeSchedule, monitorIntervalMilliseconds: Int,
        completionTimeoutSecondsPerGiB: Double, progressTimeoutSeconds: Double, onTimeout: TimeoutAction,
        bandwidthMiBPerSecond: Int?
    ) {
        self.name = name
        self.checks = checks
        self.schedule = schedule
        self.monitorIntervalMilliseconds = monitorIntervalMilliseconds
        self.completionTimeoutSecondsPerGiB = completionTimeoutSecondsPerGiB
        self.progressTimeoutSeconds = progressTimeoutSeconds
        self.onTimeout = onTimeout
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
    }

    /// The planned steps for a guest of `memoryGiB`: what `policy schedule` prints. Schedules
    /// driven by live statistics say what they react to instead of a time.
    package func plannedSteps(memoryGiB: Double) -> [(when: String, milliseconds: Int)] {
        let cap = checks.maxDowntimeMilliseconds
        switch schedule {
        case .fixed(let ms):
            return [("from the start", min(ms, cap))]
        case .nova(let d, let s, let t):
            return NovaSteps.steps(downtimeMilliseconds: d, steps: s, delaySecondsPerGiB: t, memoryGiB: memoryGiB).map {
                ("at \($0.seconds) s", min($0.milliseconds, cap))
            }
        case .stalledIterations(let steps, let abortAfter):
            return [("from the start", min(schedule.initialMilliseconds, cap))]
                + steps.map {
                    (
                        "after \($0.stalledIterations) stalled iteration\($0.stalledIterations == 1 ? "" : "s")",
                        min($0.milliseconds, cap)
                    )
                }
                + [("after \(abortAfter) stalled iterations: abort", 0)]
        case .doubling(let start):
            var out: [(String, Int)] = [("from the start", min(start, cap))]
            var value = start
            var growths = 1
            while value < cap && out.count < 24 {
                value = min(value * 2, cap)
                out.append(("when remaining data has grown \(growths) time\(growths == 1 ? "" : "s")", value))
                growths += 1
            }
            return out
        case .adaptive(let initial, let margin):
            return [
                ("from the start", min(initial, cap)),
                ("as soon as remaining ÷ rate × \(margin) (+ untracked framebuffer) fits within \(cap) ms", cap),
            ]
        }
    }
}
