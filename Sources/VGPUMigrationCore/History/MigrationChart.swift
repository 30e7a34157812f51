import struct Foundation.Date

/// One migration drawn as an SVG document from its record: the data remaining, the transfer and
/// dirty rates, and the downtime limit over time, with the passes over memory, the state
/// transitions and the downtime the guest saw.
///
/// Time runs left to right from the request (``MigrationRecord/createdAt``) to the last thing
/// the record holds. Each panel's scale runs from 0 to a tenth above its highest value. Every
/// curve carries `data-series` and every mark `data-mark`, so scripts and tests can find them.
package struct MigrationChart: Sendable {
    /// A curve.
    package enum Series: String, Sendable, CaseIterable {
        /// `data_remaining`, MiB.
        case remaining
        /// `memory_bps`, MiB/s.
        case transferRate = "transfer-rate"
        /// `memory_dirty_rate` at 4 KiB pages (x86), MiB/s.
        case dirtyRate = "dirty-rate"
        /// The downtime limit applied, ms: a step at each change, held to the end.
        case downtimeLimit = "downtime-limit"

        /// The panel the curve is drawn in.
        package var panel: Int {
            switch self {
            case .remaining: 0
            case .transferRate, .dirtyRate: 1
            case .downtimeLimit: 2
            }
        }

        var colour: String {
            switch self {
            case .remaining: "#1f77b4"
            case .transferRate: "#2ca02c"
            case .dirtyRate: "#d62728"
            case .downtimeLimit: "#9467bd"
            }
        }

        var label: String {
            switch self {
            case .remaining: "data remaining"
            case .transferRate: "transfer rate"
            case .dirtyRate: "dirty rate"
            case .downtimeLimit: "downtime limit"
            }
        }
    }

    package static let width = 960.0
    static let left = 90.0
    static let right = 30.0
    static let header = 70.0
    static let panelHeight = 150.0
    static let panelGap = 40.0
    static let footer = 40.0
    static let panelTitles = ["data remaining (MiB)", "rates (MiB/s)", "downtime (ms)"]

    package let record: MigrationRecord
    /// Seconds from the request to the right edge.
    package let span: Double
    /// The top of each panel's scale.
    package let maxima: [Double]

    package init(record: MigrationRecord) {
        self.record = record
        var end = record.updatedAt.timeIntervalSince(record.createdAt)
        for sample in record.samples + (record.finalStats.map { [$0] } ?? []) {
            end = max(end, sample.time.timeIntervalSince(record.createdAt))
        }
        for step in record.downtimeSteps { end = max(end, step.time.timeIntervalSince(record.createdAt)) }
        span = max(end, 1)
        var maxima = [1.0, 1.0, 1.0]
        for series in Series.allCases {
            for point in Self.values(of: series, in: record) {
                maxima[series.panel] = max(maxima[series.panel], point.value * 1.1)
            }
        }
        if let achieved = record.downtimeMilliseconds { maxima[2] = max(maxima[2], Double(achieved) * 1.1) }
        self.maxima = maxima
    }

    package static var height: Double { header + 3 * panelHeight + 2 * panelGap + footer }

    /// The horizontal position of `seconds` after the request.
    package func x(_ seconds: Double) -> Double {
        Self.left + (Self.width - Self.left - Self.right) * min(max(seconds, 0), span) / span
    }

    /// The vertical position of `value` in `panel`.
    package func y(_ value: Double, panel: Int) -> Double {
        let bottom = Self.header + Double(panel) * (Self.panelHeight + Self.panelGap) + Self.panelHeight
        return bottom - Self.panelHeight * min(max(value, 0), maxima[panel]) / maxima[panel]
    }

    /// The points of `series` as the record holds them: seconds after the request, and the value.
    package func values(of series: Series) -> [(seconds: Double, value: Double)] {
        Self.values(of: series, in: record)
    }

    static func values(of series: Series, in record: MigrationRecord) -> [(seconds: Double, value: Double)] {
        let mebibyte = Double(1 << 20)
        func points(_ value: (JobSample) -> Double?) -> [(seconds: Double, value: Double)] {
            record.samples.compactMap { sample in
                value(sample).map { (sample.time.timeIntervalSince(record.createdAt), $0) }
            }
        }
        switch series {
        case .remaining: return points { $0.dataRemainingBytes.map { Double($0) / mebibyte } }
        case .transferRate: return points { $0.memoryBytesPerSecond.map { Double($0) / mebibyte } }
        case .dirtyRate: return points { $0.dirtyBytesPerSecond.map { Double($0) / mebibyte } }
        case .downtimeLimit:
            return record.downtimeSteps.map { ($0.time.timeIntervalSince(record.createdAt), Double($0.milliseconds)) }
        }
    }

    /// The points of `series` in the drawing's coordinates, as its `points` attribute holds them.
    package func drawnPoints(of series: Series) -> [(x: Double, y: Double)] {
        let values = values(of: series)
        var points = values.map { (x: x($0.seconds), y: y($0.value, panel: series.panel)) }
        if series == .downtimeLimit {
            // A limit holds until the next one, and the last to the end.
            points = []
            for (index, step) in values.enumerated() {
                let until = index + 1 < values.count ? values[index + 1].seconds : span
                points.append((x(step.seconds), y(step.value, panel: 2)))
                points.append((x(until), y(step.value, panel: 2)))
            }
        }
        return points.map { (Self.rounded($0.x), Self.rounded($0.y)) }
    }

    /// Where each new pass over memory begins: seconds after the request, and the pass.
    package var passes: [(seconds: Double, pass: UInt64)] {
        var found: [(Double, UInt64)] = []
        var last: UInt64 = 0
        for sample in record.samples {
            guard let pass = sample.iteration, pass > last else { continue }
            found.append((sample.time.timeIntervalSince(record.createdAt), pass))
            last = pass
        }
        return found
    }

    static func rounded(_ value: Double) -> Double { (value * 100).rounded() / 100 }

    /// The SVG document.
    package var svg: String {
        var out = ""
        func add(_ line: String) { out += line + "\n" }
        let width = Self.width
        let height = Self.height
        add(##"<?xml version="1.0" encoding="UTF-8"?>"##)
        add(
            ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(width)" height="\##(height)" viewBox="0 0 \##(width) \##(height)" font-family="sans-serif" font-size="12">"##
        )
        add(##"<rect width="100%" height="100%" fill="white"/>"##)
        let title =
            "\(record.vm): \(record.source) → \(record.destination), policy \(record.policy), "
            + "\(record.state.rawValue) in \(Self.rounded(record.durationSeconds)) s"
        add(##"<text x="\##(Self.left)" y="22" font-size="15" font-weight="bold">\##(escaped(title))</text>"##)
        add(
            ##"<text x="\##(width - Self.right)" y="22" text-anchor="end" fill="#555">migration \##(escaped(record.id))</text>"##
        )
        for panel in 0..<3 { drawPanel(panel, add) }
        for series in Series.allCases {
            let points = drawnPoints(of: series)
            guard !points.isEmpty else { continue }
            let text = points.map { "\($0.x),\($0.y)" }.joined(separator: " ")
            add(
                ##"<polyline data-series="\##(series.rawValue)" points="\##(text)" fill="none" stroke="\##(series.colour)" stroke-width="2"/>"##
            )
        }
        let top = Self.header - 8
        let bottom = Self.height - Self.footer
        for pass in passes {
            let at = Self.rounded(x(pass.seconds))
            add(
                ##"<line data-mark="pass" x1="\##(at)" y1="\##(Self.header)" x2="\##(at)" y2="\##(bottom)" stroke="#bbb" stroke-dasharray="3,3"/>"##
            )
            add(##"<text x="\##(at + 3)" y="\##(bottom + 14)" fill="#777" font-size="10">pass \##(pass.pass)</text>"##)
        }
        // Transitions close together (the first steps are often milliseconds apart) get their
        // names on rows one above the other; near the right edge they end at their line.
        var previous = -Double.infinity
        var row = 0
        for event in record.events {
            let at = Self.rounded(x(event.time.timeIntervalSince(record.createdAt)))
            row = at - previous < 70 ? (row + 1) % 3 : 0
            previous = at
            let level = top - Double(row) * 11
            add(
                ##"<line data-mark="transition" x1="\##(at)" y1="\##(level + 3)" x2="\##(at)" y2="\##(bottom)" stroke="#444" stroke-width="0.8"/>"##
            )
            let anchor = at > width - Self.right - 70 ? "end" : "start"
            let labelX = anchor == "end" ? at - 3 : at + 3
            add(
                ##"<text x="\##(labelX)" y="\##(level)" text-anchor="\##(anchor)" font-size="10">\##(event.to.rawValue)</text>"##
            )
        }
        if let achieved = record.downtimeMilliseconds {
            let at = Self.rounded(x(span))
            let level = Self.rounded(y(Double(achieved), panel: 2))
            add(
                ##"<circle data-mark="achieved-downtime" cx="\##(at)" cy="\##(level)" r="5" fill="#ff7f0e"/>"##
            )
            add(
                ##"<text x="\##(at - 8)" y="\##(level - 8)" text-anchor="end" fill="#ff7f0e">downtime \##(achieved) ms</text>"##
            )
        }
        if record.samples.isEmpty {
            add(
                ##"<text x="\##(width / 2)" y="\##(Self.header + Self.panelHeight / 2)" text-anchor="middle" fill="#777">no job statistics were recorded</text>"##
            )
        }
        add(
            ##"<text x="\##(width / 2)" y="\##(height - 8)" text-anchor="middle" fill="#555">seconds after the request (\##(Self.rounded(span)) s in all)</text>"##
        )
        add("</svg>")
        return out
    }

    private func drawPanel(_ panel: Int, _ add: (String) -> Void) {
        let top = Self.header + Double(panel) * (Self.panelHeight + Self.panelGap)
        let bottom = top + Self.panelHeight
        let right = Self.width - Self.right
        add(
            ##"<rect x="\##(Self.left)" y="\##(top)" width="\##(right - Self.left)" height="\##(Self.panelHeight)" fill="none" stroke="#ccc"/>"##
        )
        add(##"<text x="\##(Self.left + 4)" y="\##(top + 14)" fill="#333">\##(Self.panelTitles[panel])</text>"##)
        for fraction in [0.0, 0.5, 1.0] {
            let value = maxima[panel] * fraction
            let level = Self.rounded(y(value, panel: panel))
            add(
                ##"<text x="\##(Self.left - 6)" y="\##(level + 4)" text-anchor="end" fill="#555">\##(Int(value.rounded()))</text>"##
            )
        }
        for tick in 0...4 {
            let seconds = span * Double(tick) / 4
            let at = Self.rounded(x(seconds))
            add(##"<line x1="\##(at)" y1="\##(bottom)" x2="\##(at)" y2="\##(bottom + 4)" stroke="#999"/>"##)
            add(
                ##"<text x="\##(at)" y="\##(bottom + 16)" text-anchor="middle" fill="#555" font-size="10">\##(Self.rounded(seconds))</text>"##
            )
        }
        var legend = right - 8
        for series in Series.allCases.reversed() where series.panel == panel {
            add(
                ##"<text x="\##(legend)" y="\##(top + 14)" text-anchor="end" fill="\##(series.colour)">\##(series.label)</text>"##
            )
            legend -= Double(series.label.count) * 7 + 16
        }
    }

    private func escaped(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
