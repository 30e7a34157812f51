import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUMigrationStorage

/// The PostgreSQL history while its server restarts, as the engine meets it mid-migration.
@Suite("PostgreSQL history across a server restart (real server)", .timeLimit(.minutes(2)))
struct PostgresRestartTests {
    @Test("while the server is down every call fails as unavailable; once it is back the same store works again")
    func downThenBack() async throws {
        let server = try PostgresServer.start()
        defer { server.stop() }
        let store = try await PostgresHistoryStore.open(url: try server.createDatabase())
        var record = migration("m-restart", vm: "vm")
        try await store.begin(record)

        try server.halt()
        try record.transition(to: .checking, reason: "pre-flight", at: t0)
        for _ in 0..<3 {
            await #expect {
                try await store.save(record)
            } throws: { error in
                if case .unavailable = error as? HistoryStoreError { true } else { false }
            }
        }
        await #expect(throws: HistoryStoreError.self) { try await store.record(id: record.id) }

        try server.resume()
        try await store.save(record)
        #expect(try await store.record(id: record.id)?.state == .checking)
    }
}
