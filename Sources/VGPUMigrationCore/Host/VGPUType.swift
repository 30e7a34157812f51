/// What NVIDIA's vGPU type name says: `NVIDIA L40S-8Q` is board prefix `L40S`, 8 GB of
/// framebuffer, series `Q`; `GRID A100-3-20C` is a MIG-backed type on 3 GPU-instance slices.
package struct VGPUProfile: Sendable, Hashable, Codable {
    /// The board part of the name (`T4`, `A100D`, `H100XM`, `RTX6000-Ada`).
    package var boardPrefix: String
    /// Framebuffer in GB as written in the name.
    package var framebufferGB: Int
    /// Series letter: `Q` (workstation), `C` (compute), `B` (business), `A` (app streaming).
    package var series: String
    /// Number of MIG slices for MIG-backed types, nil for time-sliced types.
    package var migSlices: Int?
    /// What follows the series letter (`ME` for media-extension MIG types, a head count on old B types).
    package var suffix: String

    enum CodingKeys: String, CodingKey {
        case boardPrefix = "board_prefix"
        case framebufferGB = "framebuffer_gb"
        case series
        case migSlices = "mig_slices"
        case suffix
    }

    /// Time-sliced vGPUs share the GPU by turns; MIG-backed ones own GPU-instance slices.
    package var isTimeSliced: Bool { migSlices == nil }

    /// Reads a vGPU type name. Returns nil when it does not follow NVIDIA's naming.
    package init?(typeName: String) {
        var name = Substring(typeName.trimmingXMLWhitespace())
        for vendorWord in ["NVIDIA ", "GRID "] where name.hasPrefix(vendorWord) {
            name = name.dropFirst(vendorWord.count)
        }
        // <board>-[<slices>-]<GB><series letter><suffix>; the board may itself contain '-'.
        let pieces = name.split(separator: "-", omittingEmptySubsequences: false)
        guard pieces.count >= 2, let profile = pieces.last else { return nil }
        let digits = profile.prefix(while: \.isASCIIDigit)
        let rest = profile.dropFirst(digits.count)
        guard let framebuffer = Int(digits), framebuffer > 0, let letter = rest.first, letter.isUppercase,
            letter.isASCII
        else { return nil }
        var boardPieces = pieces.dropLast()
        var slices: Int?
        if boardPieces.count >= 2, let last = boardPieces.last, !last.isEmpty, last.allSatisfy(\.isASCIIDigit) {
            slices = Int(last)
            boardPieces = boardPieces.dropLast()
        }
        let board = boardPieces.joined(separator: "-")
        guard !board.isEmpty else { return nil }
        self.boardPrefix = board
        self.framebufferGB = framebuffer
        self.series = String(letter)
        self.migSlices = slices
        self.suffix = String(rest.dropFirst())
    }

    /// Framebuffer in MiB as NVIDIA's tables count it (1 GB in a name = 1024 MiB).
    package var framebufferMiB: UInt64 { UInt64(framebufferGB) * 1024 }
}

/// The `key=value, ...` pairs of an mdev type's `description` file, e.g.
/// `num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=7680x4320, max_instance=8`.
package struct MdevTypeDescription: Sendable, Hashable {
    package var framebufferMiB: UInt64?
    package var maxInstances: Int?
    package var heads: Int?
    package var maxResolution: String?
    package var frameRateLimit: Int?
    /// Every pair as written, for keys the project does not interpret.
    package var fields: [String: String]

    /// Parses the description text. Unknown keys are kept; a known key with a value that is
    /// not what the driver writes is an error naming the key.
    package init(parsing text: String) throws(MdevDescriptionError) {
        var fields: [String: String] = [:]
        let body = text.trimmingXMLWhitespace()
        if !body.isEmpty {
            for pair in body.split(separator: ",") {
                let trimmed = String(pair).trimmingXMLWhitespace()
                guard let equals = trimmed.firstIndex(of: "="), equals != trimmed.startIndex else {
                    throw MdevDescriptionError(message: "'\(trimmed)' is not a key=value pair")
                }
                fields[String(trimmed[..<equals])] = String(trimmed[trimmed.index(after: equals)...])
            }
        }
        self.fields = fields
        if let value = fields["framebuffer"] {
            guard let mib = Self.mebibytes(value) else {
                throw MdevDescriptionError(message: "framebuffer '\(value)' is not a size such as 2048M")
            }
            framebufferMiB = mib
        }
        func count(_ key: String) throws(MdevDescriptionError) -> Int? {
            guard let value = fields[key] else { return nil }
            guard let number = Int(value), number >= 0 else {
                throw MdevDescriptionError(message: "\(key) '\(value)' is not a whole number")
            }
            return number
        }
        maxInstances = try count("max_instance")
        heads = try count("num_heads")
        frameRateLimit = try count("frl_config")
        maxResolution = fields["max_resolution"]
    }

    /// `2048M` → 2048, `4G` → 4096, `1024K` → 1.
    private static func mebibytes(_ text: String) -> UInt64? {
        guard let unit = text.last else { return nil }
        let number = text.dropLast()
        guard !number.isEmpty, number.allSatisfy(\.isASCIIDigit), let value = UInt64(number) else { return nil }
        switch unit {
        case "K", "k": return value / 1024
        case "M", "m": return value
        case "G", "g": return value * 1024
        default: return nil
        }
    }
}

package struct MdevDescriptionError: Error, Sendable, Hashable, CustomStringConvertible {
    package var message: String
    package var description: String { message }
}

/// One line of an NVIDIA vendor-specific VF's `creatable_vgpu_types` file.
package struct CreatableVGPUType: Sendable, Hashable {
    package var id: Int
    package var name: String

    /// Parses the file: a header `ID    : vGPU Name`, then one `%-5d : %s` line per type.
    /// An empty file or a header alone means nothing can be created on the VF now.
    package static func parseList(_ text: String) throws(CreatableListError) -> [CreatableVGPUType] {
        var types: [CreatableVGPUType] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(rawLine).trimmingXMLWhitespace()
            if line.isEmpty { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw CreatableListError(line: index + 1, message: "'\(line)' has no ':' between id and name")
            }
            let idText = String(line[..<colon]).trimmingXMLWhitespace()
            let name = String(line[line.index(after: colon)...]).trimmingXMLWhitespace()
            if index == 0 && idText == "ID" { continue }
            guard !idText.isEmpty, idText.allSatisfy(\.isASCIIDigit), let id = Int(idText), id > 0 else {
                throw CreatableListError(line: index + 1, message: "'\(idText)' is not a vGPU type id")
            }
            guard !name.isEmpty else {
                throw CreatableListError(line: index + 1, message: "type \(id) has no name")
            }
            types.append(CreatableVGPUType(id: id, name: name))
        }
        return types
    }
}

package struct CreatableListError: Error, Sendable, Hashable, CustomStringConvertible {
    package var line: Int
    package var message: String
    package var description: String { "line \(line): \(message)" }
}
