/// What the pre-flight check demands, from the policy file's `checks` and `downtime` sections.
package struct CheckPolicy: Sendable, Hashable {
    /// How strictly the NVIDIA host driver versions must agree.
    package enum DriverMatch: String, Sendable, Hashable, CaseIterable {
        /// Same version string (NVIDIA and Red Hat: migration fails otherwise).
        case exact
        /// Same branch (first number), for operators who have verified their branch.
        case branch
    }

    /// What a GPU without framebuffer dirty-page tracking is.
    package enum MissingDirtyTracking: String, Sendable, Hashable, CaseIterable {
        case warn, fail
    }

    package var name: String
    package var minimumLibvirt: VersionNumber
    package var minimumQEMU: VersionNumber
    package var minimumKernel: VersionNumber
    package var driverMatch: DriverMatch
    package var missingDirtyTracking: MissingDirtyTracking
    /// Whether the policy would use post-copy (never allowed with vGPUs).
    package var postCopy: Bool
    /// The most downtime the policy will ever allow, in milliseconds.
    package var maxDowntimeMilliseconds: Int
    /// Guest dirty rate assumed for the estimate when none is measured, in MiB/s.
    package var assumedDirtyRateMiBPerSecond: Double
    /// Link bandwidth assumed when the inventory gives none, in MiB/s.
    package var defaultBandwidthMiBPerSecond: Double
    /// Distribution kernels below `minimumKernel` that carry VFIO live migration
    /// (`policies/kernel-backports.yaml`); any other kernel below it fails.
    package var kernelBackports: [KernelBackport] = []

    /// Nova's minimums for vGPU live migration and conservative defaults.
    package static let defaults = CheckPolicy(
        name: "built-in", minimumLibvirt: VersionNumber([8, 6, 0]), minimumQEMU: VersionNumber([8, 1, 0]),
        minimumKernel: VersionNumber([5, 18, 0]), driverMatch: .exact, missingDirtyTracking: .warn, postCopy: false,
        maxDowntimeMilliseconds: 30000, assumedDirtyRateMiBPerSecond: 100, defaultBandwidthMiBPerSecond: 1250)

    package init(
        name: String, minimumLibvirt: VersionNumber, minimumQEMU: VersionNumber, minimumKernel: VersionNumber,
        driverMatch: DriverMatch, missingDirtyTracking: MissingDirtyTracking, postCopy: Bool,
        maxDowntimeMilliseconds: Int, assumedDirtyRateMiBPerSecond: Double, defaultBandwidthMiBPerSecond: Double
    ) {
        self.name = name
        self.minimumLibvirt = minimumLibvirt
        self.minimumQEMU = minimumQEMU
        self.minimumKernel = minimumKernel
        self.driverMatch = driverMatch
        self.missingDirtyTracking = missingDirtyTracking
        self.postCopy = postCopy
        self.maxDowntimeMilliseconds = maxDowntimeMilliseconds
        self.assumedDirtyRateMiBPerSecond = assumedDirtyRateMiBPerSecond
        self.defaultBandwidthMiBPerSecond = defaultBandwidthMiBPerSecond
    }
}
