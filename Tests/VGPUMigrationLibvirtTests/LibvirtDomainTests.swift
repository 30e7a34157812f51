import Foundation
import Testing

@testable import VGPUMigrationLibvirt

@Suite("the migration connection opened ahead")
struct PreparedMigrationLineTests {
    private func failure(_ message: String) -> Result<MigrationLine, LibvirtError> {
        .failure(LibvirtError(code: 38, domain: 0, message: message, operation: "connecting"))
    }

    @Test("nothing prepared: the migration opens its own connection")
    func nothingPrepared() {
        #expect(PreparedMigrationLine().take() == nil)
    }

    @Test("prepared twice: opened once; the migration waits for it, takes it, and the next one opens its own")
    func preparedOnce() {
        let line = PreparedMigrationLine()
        let opens = Counter()
        let release = DispatchSemaphore(value: 0)
        line.prepare {
            opens.add()
            release.wait()  // still opening when the migration asks for it
            return failure("first")
        }
        line.prepare {
            opens.add()
            return failure("second")
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { release.signal() }
        guard case .failure(let error) = line.take() else {
            Issue.record("no line was handed over")
            return
        }
        #expect(error.message == "first")
        #expect(opens.value == 1)
        #expect(line.take() == nil)
    }
}

/// A count shared with the preparing thread.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func add() { lock.withLock { count += 1 } }
}
