/// An estimate of a live migration before it starts: how long it takes and how long the guest
/// is paused ("stun time").
///
/// Model (pre-copy, as QEMU does it):
/// - Data: guest RAM `M`, plus the vGPU framebuffer `F` of all vGPUs. With dirty-page tracking
///   the framebuffer is copied live like RAM; without it `F` can only move while the guest is
///   paused.
/// - Rounds: the first round sends `M` (+ `F` when tracked) at link bandwidth `B`; each later
///   round resends what the guest dirtied meanwhile, at dirty rate `D`, so rounds shrink by the
///   ratio `r = D / B`. QEMU switches over when the remainder can be sent within the downtime
///   limit `L`: remainder ≤ `B × L`.
/// - Converging (`r < 1`): RAM stun ≤ `L`; total time = sum of the rounds + stun.
/// - Not converging (`r ≥ 1`): the remainder stays at the data dirtied during one round,
///   `min(M, D × M / B)`, and that is what must move while paused.
/// - Stun time = RAM remainder ÷ `B` + untracked framebuffer ÷ `B`.
///
/// The check simulates with QEMU's default limit (300 ms, or the policy cap if lower), so the
/// result is the downtime the migration needs, which the check then compares with the cap.
package struct MigrationEstimate: Sendable, Hashable, Codable {
    /// QEMU's default `downtime-limit`.
    package static let qemuDefaultDowntimeMilliseconds = 300.0

    package var memoryMiB: Double
    package var framebufferMiB: Double
    /// Framebuffer that moves while the guest is paused (no dirty-page tracking).
    package var untrackedFramebufferMiB: Double
    package var bandwidthMiBPerSecond: Double
    package var dirtyRateMiBPerSecond: Double
    /// The downtime limit the simulated switch-over aims at, in milliseconds.
    package var downtimeLimitMilliseconds: Double
    package var converges: Bool
    package var rounds: Int
    package var totalSeconds: Double
    package var downtimeMilliseconds: Double

    enum CodingKeys: String, CodingKey {
        case memoryMiB = "memory_mib"
        case framebufferMiB = "framebuffer_mib"
        case untrackedFramebufferMiB = "untracked_framebuffer_mib"
        case bandwidthMiBPerSecond = "bandwidth_mib_per_s"
        case dirtyRateMiBPerSecond = "dirty_rate_mib_per_s"
        case downtimeLimitMilliseconds = "downtime_limit_ms"
        case converges, rounds
        case totalSeconds = "total_s"
        case downtimeMilliseconds = "downtime_ms"
    }

    package init(
        memoryMiB: Double, framebufferMiB: Double, untrackedFramebufferMiB: Double, bandwidthMiBPerSecond: Double,
        dirtyRateMiBPerSecond: Double, downtimeLimitMilliseconds: Double
    ) {
        self.memoryMiB = memoryMiB
        self.framebufferMiB = framebufferMiB
        self.untrackedFramebufferMiB = untrackedFramebufferMiB
        self.bandwidthMiBPerSecond = bandwidthMiBPerSecond
        self.dirtyRateMiBPerSecond = dirtyRateMiBPerSecond
        self.downtimeLimitMilliseconds = downtimeLimitMilliseconds

        let bandwidth = max(bandwidthMiBPerSecond, 0.001)
        let live = memoryMiB + (framebufferMiB - untrackedFramebufferMiB)
        let threshold = bandwidth * downtimeLimitMilliseconds / 1000
        let ratio = dirtyRateMiBPerSecond / bandwidth
        var remaining = live
        var seconds = 0.0
        var rounds = 0
        if ratio < 1 {
            // Send rounds until what is left fits in the downtime limit (at most 1000 rounds).
            while remaining > threshold && rounds < 1000 {
                let roundSeconds = remaining / bandwidth
                seconds += roundSeconds
                remaining = min(live, dirtyRateMiBPerSecond * roundSeconds)
                rounds += 1
            }
            converges = remaining <= threshold
        } else {
            seconds = live / bandwidth
            remaining = min(memoryMiB, dirtyRateMiBPerSecond * memoryMiB / bandwidth)
            rounds = 1
            converges = remaining <= threshold
        }
        let stun = (remaining + untrackedFramebufferMiB) / bandwidth
        self.rounds = rounds
        self.downtimeMilliseconds = stun * 1000
        self.totalSeconds = seconds + stun
    }
}
