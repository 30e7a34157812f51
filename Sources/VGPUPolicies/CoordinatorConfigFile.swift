import Foundation

/// The coordinator's settings file (`config.yaml`): where the history, the inventory and the
/// policies are, so several coordinators can share one PostgreSQL history without a flag on
/// every command.
///
/// ```yaml
/// database: postgres://vgpu@db.example:5432/vgpu_migrate   # or a SQLite file path
/// inventory: hosts.yaml                                     # relative to this file
/// policies: /etc/vgpu-migrate/policies
/// ```
package struct CoordinatorConfig: Sendable, Hashable {
    /// A SQLite file path or a `postgres://` URL.
    package var database: String?
    /// The inventory file, as an absolute path.
    package var inventory: String?
    /// The policies directory, as an absolute path.
    package var policies: String?
    /// The file these settings came from.
    package var file: String

    package init(database: String? = nil, inventory: String? = nil, policies: String? = nil, file: String) {
        self.database = database
        self.inventory = inventory
        self.policies = policies
        self.file = file
    }
}

/// Reads the coordinator's settings file.
package enum CoordinatorConfigFile {
    /// The variable naming the settings file; when set, the file must exist.
    package static let environmentVariable = "VGPU_MIGRATE_CONFIG"
    /// Looked at in this order when the variable is not set: per user, then system-wide.
    package static func defaultPaths(environment: [String: String]) -> [String] {
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) }
        let userBase =
            environment["XDG_CONFIG_HOME"].map { URL(fileURLWithPath: $0) } ?? home?.appendingPathComponent(".config")
        return (userBase.map { [$0.appendingPathComponent("vgpu-migrate/config.yaml").path] } ?? [])
            + ["/etc/vgpu-migrate/config.yaml"]
    }

    /// Parses the file's text; relative paths are taken from the file's directory.
    package static func parse(_ text: String, file: String) throws(PolicyFileError) -> CoordinatorConfig {
        let document = try PolicyYAML.parse(text, file: file)
        _ = try document.mapping(allowedKeys: ["database", "inventory", "policies"], what: "the settings file")
        let directory = URL(fileURLWithPath: file).deletingLastPathComponent()
        func path(_ key: String) throws(PolicyFileError) -> String? {
            guard let node = document.optional(key) else { return nil }
            let value = try node.string(what: key)
            guard !value.isEmpty else { throw node.error("\(key) must not be empty") }
            return value.hasPrefix("/") ? value : directory.appendingPathComponent(value).standardized.path
        }
        var config = CoordinatorConfig(file: file)
        if let node = document.optional("database") {
            let value = try node.string(what: "database")
            guard !value.isEmpty else { throw node.error("database must not be empty") }
            let isURL = ["postgres://", "postgresql://", "sqlite:"].contains { value.hasPrefix($0) }
            config.database =
                isURL || value.hasPrefix("/") ? value : directory.appendingPathComponent(value).standardized.path
        }
        config.inventory = try path("inventory")
        config.policies = try path("policies")
        return config
    }

    /// The settings in force: the file `VGPU_MIGRATE_CONFIG` names, else the first default path
    /// that exists; nil when there is none.
    package static func load(environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(PolicyFileError) -> CoordinatorConfig?
    {
        let path: String
        if let named = environment[environmentVariable], !named.isEmpty {
            path = named
        } else if let found = defaultPaths(environment: environment).first(where: {
            FileManager.default.fileExists(atPath: $0)
        }) {
            path = found
        } else {
            return nil
        }
        return try parse(try TextFile.readPolicyFile(path, what: "the settings file"), file: path)
    }
}
