/// A distribution's kernel line that carries VFIO live migration although its upstream version
/// is below the minimum (`policies/kernel-backports.yaml`): Red Hat Enterprise Linux 9.4 and
/// later run 5.14.0-427.el9 kernels or newer, and NVIDIA supports vGPU live migration there.
package struct KernelBackport: Sendable, Hashable {
    /// What the operator calls it: `Red Hat Enterprise Linux 9.4 and later`.
    package var name: String
    /// The upstream version the distribution's kernels report first: `5.14.0`.
    package var upstream: VersionNumber
    /// The distribution's tag in the release string: `el9` in `5.14.0-427.13.1.el9_4.x86_64`.
    package var tag: String
    /// The first build number that carries the backport: `427` (RHEL 9.4's first kernel).
    package var minimumBuild: Int
    /// Where the support statement is.
    package var source: String?

    package init(name: String, upstream: VersionNumber, tag: String, minimumBuild: Int, source: String? = nil) {
        self.name = name
        self.upstream = upstream
        self.tag = tag
        self.minimumBuild = minimumBuild
        self.source = source
    }

    /// Whether `release` (`uname -r`) is one of these kernels: its upstream part is `upstream`,
    /// the build number after the first `-` is at least `minimumBuild`, and one of the
    /// dot-separated parts after it is the tag (`el9`, or `el9_4` for a minor release).
    package func matches(_ release: String) -> Bool {
        guard let dash = release.firstIndex(of: "-"), let version = VersionNumber(release[..<dash]),
            version == upstream
        else { return false }
        let rest = release[release.index(after: dash)...]
        guard let build = Int(rest.prefix(while: \.isASCIIDigit)), build >= minimumBuild else { return false }
        return rest.split(separator: ".").contains { part in part == tag || part.hasPrefix(tag + "_") }
    }

    /// `5.14.0-427.el9`: the oldest release string that matches.
    package var oldestRelease: String { "\(upstream)-\(minimumBuild).\(tag)" }
}
