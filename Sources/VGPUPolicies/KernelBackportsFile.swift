import VGPUMigrationCore

/// Reads `kernel-backports.yaml`: distribution kernels below the minimum kernel version that
/// carry VFIO live migration.
package enum KernelBackportsFile {
    /// The file name inside a policies directory.
    package static let fileName = "kernel-backports.yaml"

    /// Parses the text of the table. `file` names it in errors.
    package static func parse(_ text: String, file: String) throws(PolicyFileError) -> [KernelBackport] {
        let document = try PolicyYAML.parse(text, file: file)
        _ = try document.mapping(allowedKeys: ["backports"], what: "the kernel backport table")
        var backports: [KernelBackport] = []
        let keys: Set<String> = ["name", "kernel", "tag", "minimum_build", "source"]
        for entry in try document.required("backports", in: "the kernel backport table").sequence(what: "'backports'") {
            _ = try entry.mapping(allowedKeys: keys, what: "a backport")
            let name = try entry.required("name", in: "a backport").string(what: "name")
            let what = "backport '\(name)'"
            let kernelNode = try entry.required("kernel", in: what)
            let kernelText = try kernelNode.string(what: "kernel")
            guard let kernel = VersionNumber(kernelText), kernel.description == kernelText, kernel.components.count == 3
            else {
                throw kernelNode.error("kernel '\(kernelText)' is not an upstream version such as 5.14.0")
            }
            let tagNode = try entry.required("tag", in: what)
            let tag = try tagNode.string(what: "tag")
            guard tag.count <= 32, tag.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw tagNode.error("tag '\(tag)' must be letters and digits, such as el9")
            }
            backports.append(
                KernelBackport(
                    name: name, upstream: kernel, tag: tag,
                    minimumBuild: try entry.required("minimum_build", in: what).int(
                        what: "minimum_build", range: 0...999_999),
                    source: try entry.optional("source")?.string(what: "source")))
        }
        return backports
    }
}

/// The files of a policies directory that are tables, not migration policies.
package enum PolicyTables {
    package static let fileNames: Set<String> = [GPUBoardCatalogFile.fileName, KernelBackportsFile.fileName]

    /// Whether `name` (without `.yaml`) names a table rather than a policy.
    package static func isTable(_ name: String) -> Bool { fileNames.contains("\(name).yaml") }
}
