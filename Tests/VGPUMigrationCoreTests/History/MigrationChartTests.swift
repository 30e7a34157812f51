import Foundation
import Testing

@testable import VGPUMigrationCore

@Suite("Migration chart (show --svg)")
struct MigrationChartTests {
    /// A migration with three passes, two downtime steps and a completed switchover.
    static func record() throws -> MigrationRecord {
        let start = Date(timeIntervalSince1970: 1_795_000_000)
        var record = MigrationRecord(
            id: "a0a0a0a0-1111-4000-8000-000000000001", vm: "vm <t4> & co", source: "t4-a", destination: "t4-b",
            policy: "adaptive", at: start)
        try record.transition(to: .checking, reason: "pre-flight", at: start.addingTimeInterval(0.2))
        try record.transition(to: .reserving, reason: "checks passed", at: start.addingTimeInterval(0.5))
        try record.transition(to: .migrating, reason: "reserved", at: start.addingTimeInterval(1))
        for (second, remaining, rate, dirty, pass) in [
            (2.0, 4096, 100, 12_800, 1), (3, 3000, 110, 25_600, 1), (4, 900, 120, 25_600, 2), (5, 300, 90, 6_400, 3),
        ] {
            record.record(
                sample: JobSample(
                    time: start.addingTimeInterval(second), elapsedMilliseconds: UInt64(second * 1000),
                    dataRemainingBytes: UInt64(remaining) << 20, memoryBytesPerSecond: UInt64(rate) << 20,
                    dirtyPagesPerSecond: UInt64(dirty), iteration: UInt64(pass)))
        }
        record.downtimeSteps = [
            DowntimeStep(time: start.addingTimeInterval(1), milliseconds: 300, reason: "start"),
            DowntimeStep(time: start.addingTimeInterval(4.5), milliseconds: 2500, reason: "adaptive"),
        ]
        record.finalStats = JobSample(
            time: start.addingTimeInterval(6), elapsedMilliseconds: 5000, downtimeMilliseconds: 1840)
        try record.transition(to: .completing, reason: "switched over", at: start.addingTimeInterval(6))
        try record.transition(to: .completed, reason: "committed", at: start.addingTimeInterval(6.5))
        return record
    }

    static func elements(_ element: XMLElement) -> [XMLElement] {
        [element] + element.children.flatMap(elements)
    }

    @Test("the SVG reads as XML and its curves are the record's samples, placed by the chart's scales")
    func curvesMatchSamples() throws {
        let record = try Self.record()
        let chart = MigrationChart(record: record)
        let document = try XMLReader.parseDocument(chart.svg)
        #expect(document.root.name == "svg" && document.root.attribute("xmlns") == "http://www.w3.org/2000/svg")
        let all = Self.elements(document.root)
        for series in MigrationChart.Series.allCases {
            let polyline = try #require(all.first { $0.attribute("data-series") == series.rawValue }, "\(series)")
            let points = try #require(polyline.attribute("points")).split(separator: " ").map { pair in
                pair.split(separator: ",").map { Double($0)! }
            }
            let expected = chart.drawnPoints(of: series)
            #expect(points.count == expected.count)
            for (point, want) in zip(points, expected) { #expect(point == [want.x, want.y]) }
            // And back: each drawn point is a sample's time and value.
            if series != .downtimeLimit {
                for (point, value) in zip(points, chart.values(of: series)) {
                    #expect(abs(point[0] - chart.x(value.seconds)) < 0.01)
                    #expect(abs(point[1] - chart.y(value.value, panel: series.panel)) < 0.01)
                }
            }
        }
        // The samples' values, in the record's units.
        #expect(chart.values(of: .remaining).map(\.value) == [4096, 3000, 900, 300])
        #expect(chart.values(of: .dirtyRate).map(\.value) == [50, 100, 100, 25])
        #expect(chart.values(of: .remaining).map(\.seconds) == [2, 3, 4, 5])
        // The highest remaining sits a tenth below the panel's top; time ends at the last event.
        #expect(chart.maxima[0] == 4096 * 1.1)
        #expect(chart.span == 6.5)
        // The downtime limit holds each step until the next, and the last to the end.
        #expect(
            chart.drawnPoints(of: .downtimeLimit).map(\.x)
                == [chart.x(1), chart.x(4.5), chart.x(4.5), chart.x(6.5)].map { ($0 * 100).rounded() / 100 })
        #expect(all.filter { $0.attribute("data-mark") == "pass" }.count == 3)
        #expect(all.filter { $0.attribute("data-mark") == "transition" }.count == record.events.count)
        let achieved = try #require(all.first { $0.attribute("data-mark") == "achieved-downtime" })
        #expect(Double(achieved.attribute("cy") ?? "") == (chart.y(1840, panel: 2) * 100).rounded() / 100)
        #expect(all.contains { $0.text == "downtime 1840 ms" })
        // Names from the record are escaped.
        #expect(all.contains { $0.text.hasPrefix("vm <t4> & co: t4-a → t4-b") })
    }

    @Test("a migration that failed before any statistics still draws, saying so")
    func noSamples() throws {
        var record = MigrationRecord(
            id: "b0", vm: "vm", source: "a", destination: "b", policy: "adaptive", at: Date(timeIntervalSince1970: 0))
        try record.transition(to: .checking, reason: "pre-flight", at: Date(timeIntervalSince1970: 0.5))
        try record.transition(to: .failed, reason: "driver.version", at: Date(timeIntervalSince1970: 1))
        let document = try XMLReader.parseDocument(MigrationChart(record: record).svg)
        let all = Self.elements(document.root)
        #expect(!all.contains { $0.name == "polyline" })
        #expect(all.contains { $0.text == "no job statistics were recorded" })
        #expect(all.filter { $0.attribute("data-mark") == "transition" }.count == 2)
    }
}
