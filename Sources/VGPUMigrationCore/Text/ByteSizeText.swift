/// A byte count as an operator reads it: `96 B`, `625 KiB`, `64.4 MiB`, `2.0 GiB`.
package func byteSizeText(_ bytes: UInt64) -> String {
    let units: [(String, UInt64)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    for (unit, size) in units where bytes >= size {
        let value = Double(bytes) / Double(size)
        return value >= 100 ? "\(Int(value.rounded())) \(unit)" : "\(Double(Int((value * 10).rounded())) / 10) \(unit)"
    }
    return "\(bytes) B"
}
