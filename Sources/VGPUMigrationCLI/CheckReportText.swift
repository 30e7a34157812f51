import VGPUCommandSupport
import VGPUMigrationCore

/// Human renderings of check results.
enum CheckReportText {
    static func report(_ report: CompatibilityReport) -> String {
        var out = "Check of VM \(report.vm): \(report.source) → \(report.destination) (policy \(report.policy))\n"
        let width = report.findings.map(\.check.count).max() ?? 0
        for finding in report.findings {
            let padded = finding.check + String(repeating: " ", count: width - finding.check.count)
            out += "  \(finding.severity.rawValue.uppercased().padding(4))  \(padded)  \(finding.message)\n"
            if let remedy = finding.remedy, finding.severity != .pass {
                out += "        \(String(repeating: " ", count: width))  hint: \(remedy)\n"
            }
        }
        if let estimate = report.estimate {
            out += "Estimate: downtime \(CompatibilityRules.seconds(estimate.downtimeMilliseconds / 1000)), "
            out += "total \(CompatibilityRules.seconds(estimate.totalSeconds))"
            out +=
                estimate.converges
                ? ", converges in \(estimate.rounds) round\(estimate.rounds == 1 ? "" : "s")\n"
                : ", does not converge by itself\n"
        }
        let failing = report.findings.filter { $0.severity == .fail }.count
        let warning = report.findings.filter { $0.severity == .warn }.count
        if report.compatible {
            out +=
                "Verdict: compatible" + (warning > 0 ? " with \(warning) warning\(warning == 1 ? "" : "s")" : "") + "\n"
        } else {
            out += "Verdict: incompatible (\(failing) check\(failing == 1 ? "" : "s") fail)\n"
        }
        return out
    }

    static func ranking(_ ranking: DestinationRanking) -> String {
        var out = "Destinations for VM \(ranking.vm) from \(ranking.source) (policy \(ranking.policy)):\n"
        var rows: [[String]] = [["RANK", "HOST", "VERDICT", "DOWNTIME", "PACKING", "REASONS"]]
        var rank = 0
        for candidate in ranking.candidates {
            if candidate.compatible { rank += 1 }
            let downtime =
                candidate.report?.estimate.map { CompatibilityRules.seconds($0.downtimeMilliseconds / 1000) } ?? "-"
            rows.append([
                candidate.compatible ? String(rank) : "-", candidate.host,
                candidate.cordoned != nil
                    ? "cordoned"
                    : candidate.unreachable != nil
                        ? "unreachable" : (candidate.compatible ? "compatible" : "incompatible"),
                downtime, String(candidate.packing), candidate.reasons.joined(separator: "; "),
            ])
        }
        out += InventoryReport.table(rows, rightAligned: [3, 4], indent: "  ")
        if let best = ranking.best {
            out += "Best destination: \(best.host)\n"
        } else {
            out += "No compatible destination.\n"
        }
        return out
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        self + String(repeating: " ", count: max(0, width - count))
    }
}
