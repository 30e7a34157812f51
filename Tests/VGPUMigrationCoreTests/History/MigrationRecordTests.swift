import Foundation
import Testing

@testable import VGPUMigrationCore

@Suite("Migration state machine")
struct MigrationStateTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("the happy path records every transition with its reason")
    func happyPath() throws {
        var record = MigrationRecord(
            id: "m1", vm: "vm", source: "a", destination: "b", policy: "adaptive", at: Self.start)
        let path: [MigrationState] = [.checking, .reserving, .migrating, .completing, .completed]
        for (index, state) in path.enumerated() {
            try record.transition(
                to: state, reason: "step \(index)", at: Self.start.addingTimeInterval(Double(index + 1)))
        }
        #expect(record.state == .completed)
        #expect(record.events.map(\.to) == path)
        #expect(record.events.map(\.from) == [.requested] + path.dropLast())
        #expect(record.events.last?.reason == "step 4")
        #expect(record.durationSeconds == 5)
    }

    @Test("every transition the table does not list is refused", arguments: MigrationState.allCases)
    func refusesIllegal(from: MigrationState) throws {
        for to in MigrationState.allCases {
            let legal = MigrationState.allowed[from]!.contains(to)
            #expect(from.canMove(to: to) == legal)
            if from.isTerminal { #expect(!legal) }
        }
    }

    @Test("a refused transition leaves the record as it was")
    func refusalKeepsRecord() throws {
        var record = MigrationRecord(id: "m1", vm: "vm", source: "a", destination: "b", policy: "p", at: Self.start)
        try record.transition(to: .checking, reason: "go", at: Self.start)
        let before = record
        #expect(throws: IllegalTransition(from: .checking, to: .completed)) {
            try record.transition(to: .completed, reason: "skip", at: Self.start)
        }
        #expect(record == before)
        try record.transition(to: .failed, reason: "check failed", at: Self.start)
        #expect(throws: IllegalTransition.self) {
            try record.transition(to: .checking, reason: "again", at: Self.start)
        }
        #expect(IllegalTransition(from: .failed, to: .checking).description.contains("already ended"))
    }

    @Test("job samples are bounded; the count of all samples is kept")
    func boundedSamples() {
        var record = MigrationRecord(id: "m1", vm: "vm", source: "a", destination: "b", policy: "p", at: Self.start)
        for index in 0..<(MigrationRecord.sampleLimit + 50) {
            record.record(
                sample: JobSample(
                    time: Self.start.addingTimeInterval(Double(index)), elapsedMilliseconds: UInt64(index) * 1000))
        }
        #expect(record.samples.count == MigrationRecord.sampleLimit)
        #expect(record.sampleCount == MigrationRecord.sampleLimit + 50)
        #expect(record.samples.first?.elapsedMilliseconds == 50_000)
    }

    @Test("the sample summary covers every sample, also those no longer kept")
    func sampleSummary() throws {
        var record = MigrationRecord(id: "m1", vm: "vm", source: "a", destination: "b", policy: "p", at: Self.start)
        #expect(record.sampleSummary == nil)
        // The peaks and the least remaining come from the first samples, which are dropped.
        for index in 0..<(MigrationRecord.sampleLimit + 50) {
            let early = index < 10
            record.record(
                sample: JobSample(
                    time: Self.start.addingTimeInterval(Double(index)), elapsedMilliseconds: UInt64(index) * 1000,
                    dataRemainingBytes: early ? 1 << 20 : 64 << 20, memoryBytesPerSecond: early ? 900 : 100,
                    dirtyPagesPerSecond: early ? 50_000 : 10, iteration: early ? 7 : 2))
        }
        // A sample that reports nothing changes nothing but the count.
        record.record(sample: JobSample(time: Self.start.addingTimeInterval(700), elapsedMilliseconds: 700_000))
        let summary = try #require(record.sampleSummary)
        #expect(record.samples.first?.memoryBytesPerSecond == 100)
        #expect(summary.peakMemoryBytesPerSecond == 900)
        #expect(summary.rateSamples == MigrationRecord.sampleLimit + 50)
        let mean =
            (10.0 * 900 + Double(MigrationRecord.sampleLimit + 40) * 100) / Double(MigrationRecord.sampleLimit + 50)
        #expect(abs((summary.meanMemoryBytesPerSecond ?? 0) - mean) < 1e-6)
        #expect(summary.peakDirtyPagesPerSecond == 50_000)
        #expect(summary.passes == 7)
        #expect(summary.leastRemainingBytes == 1 << 20)
    }

    @Test("a record written before the sample summary existed reads back without one")
    func recordWithoutSummary() throws {
        var record = MigrationRecord(id: "m1", vm: "vm", source: "a", destination: "b", policy: "p", at: Self.start)
        record.record(sample: JobSample(time: Self.start, elapsedMilliseconds: 1000, memoryBytesPerSecond: 5))
        var object = try #require(
            try JSONSerialization.jsonObject(with: try JSONEncoder().encode(record)) as? [String: Any])
        #expect(object["sample_summary"] != nil)
        object["sample_summary"] = nil
        let old = try JSONDecoder().decode(
            MigrationRecord.self, from: try JSONSerialization.data(withJSONObject: object))
        #expect(old.sampleSummary == nil)
        #expect(old.sampleCount == 1)
    }
}

@Suite("Reservation.holds")
struct ReservationHoldsTests {
    @Test("a live reservation holds the devices a guest names; a released one holds nothing")
    func holds() throws {
        let device = ReservedDevice(
            id: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", interface: .mdev, typeID: "nvidia-232",
            function: try #require(DeviceAddress("0000:3b:00.0")), gpu: try #require(DeviceAddress("0000:3b:00.0")))
        let vf = ReservedDevice(
            id: "0000:41:00.4", interface: .vendorVFIO, typeID: "1155",
            function: try #require(DeviceAddress("0000:41:00.4")), gpu: try #require(DeviceAddress("0000:41:00.0")))
        var reservation = Reservation(
            id: "r1",
            request: ReservationRequest(
                typeID: "nvidia-232", count: 2, owner: "m", leaseSeconds: 60, idempotencyKey: "k"),
            state: .committed, devices: [device, vf], createdAt: Date(), updatedAt: Date(), leaseExpiresAt: Date())
        #expect(reservation.holds(any: [.mdev(uuid: device.id)]))
        #expect(reservation.holds(any: [.pci(try #require(PCIAddress("0000:41:00.4")))]))
        #expect(!reservation.holds(any: [.mdev(uuid: "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10")]))
        reservation.state = .released
        #expect(!reservation.holds(any: [.mdev(uuid: device.id)]))
    }
}
