import Testing

/// Brings the two-host lab up around a suite and down after it, also when a test fails; the
/// suite's tests find it in ``Lab/current``.
/// With `spare`, the lab has a third host, `spare`.
package struct TwoHostLab: SuiteTrait, TestScoping {
    package var spare: Bool

    package init(spare: Bool = false) { self.spare = spare }

    package func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        try await withLab({ try Lab.up(spare: spare) }, down: { $0.down() }) { lab in
            try await Lab.$current.withValue(lab) { try await function() }
        }
    }
}

/// Brings a lab up with `up`, runs `body` with it and brings it down with `down`, also when
/// `body` throws. One lab at a time: suites run in parallel in one process, and the guests and
/// migrations of two labs would compete for this machine's few CPUs.
func withLab<L>(_ up: () throws -> L, down: (L) -> Void, _ body: (L) async throws -> Void) async throws {
    await LabLock.shared.acquire()
    do {
        let lab = try up()
        defer { down(lab) }
        try await body(lab)
    } catch {
        await LabLock.shared.release()
        throw error
    }
    await LabLock.shared.release()
}

/// A process-wide lock that suspends (never blocks a thread) until the lab is free.
actor LabLock {
    static let shared = LabLock()
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

extension Trait where Self == TwoHostLab {
    /// The two-host libvirt lab of `scripts/lab`, for the suite.
    package static var twoHostLab: Self { TwoHostLab() }

    /// The lab with a third host, `spare`: a drain that must choose between destinations.
    package static var labWithSpareHost: Self { TwoHostLab(spare: true) }
}

extension Tag {
    /// Suites that bring up a lab (the two-host libvirt lab or the nested VFIO lab): the slow
    /// ones, which need root, QEMU and libvirt (`scripts/test-labs` runs only these).
    @Tag package static var lab: Self
}
