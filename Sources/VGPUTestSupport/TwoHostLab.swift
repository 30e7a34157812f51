import Testing

/// Brings the two-host lab up around a suite and down after it, also when a test fails; the
/// suite's tests find it in ``Lab/current``.
package struct TwoHostLab: SuiteTrait, TestScoping {
    package init() {}

    package func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let lab = try Lab.up()
        defer { lab.down() }
        try await Lab.$current.withValue(lab) { try await function() }
    }
}

extension Trait where Self == TwoHostLab {
    /// The two-host libvirt lab of `scripts/lab`, for the suite.
    package static var twoHostLab: Self { TwoHostLab() }
}
