import Testing

@testable import VGPUPolicies

@Suite("Coordinator settings file")
struct CoordinatorConfigFileTests {
    @Test("relative paths are taken from the file's directory; URLs and absolute paths stay as written")
    func paths() throws {
        let config = try CoordinatorConfigFile.parse(
            "database: postgres://vgpu@db:5432/history\ninventory: hosts.yaml\npolicies: ../policies\n",
            file: "/etc/vgpu-migrate/config.yaml")
        #expect(config.database == "postgres://vgpu@db:5432/history")
        #expect(config.inventory == "/etc/vgpu-migrate/hosts.yaml")
        #expect(config.policies == "/etc/policies")
        let sqlite = try CoordinatorConfigFile.parse("database: state/history.sqlite\n", file: "/srv/vgpu/config.yaml")
        #expect(sqlite.database == "/srv/vgpu/state/history.sqlite")
        #expect(sqlite.inventory == nil && sqlite.policies == nil)
    }

    @Test("unknown keys and wrong types are refused with file:line:column")
    func errors() {
        #expect(throws: PolicyFileError.self) {
            try CoordinatorConfigFile.parse("database: /h.sqlite\ninventroy: x\n", file: "c.yaml")
        }
        do {
            _ = try CoordinatorConfigFile.parse("inventory: {a: 1}\n", file: "c.yaml")
            Issue.record("a mapping as inventory was accepted")
        } catch {
            #expect(error.description.hasPrefix("c.yaml:1:"), "\(error.description)")
        }
    }

    @Test("the per-user file comes before the system-wide one")
    func defaultPaths() {
        #expect(
            CoordinatorConfigFile.defaultPaths(environment: ["HOME": "/home/op"])
                == ["/home/op/.config/vgpu-migrate/config.yaml", "/etc/vgpu-migrate/config.yaml"])
        #expect(
            CoordinatorConfigFile.defaultPaths(environment: ["HOME": "/home/op", "XDG_CONFIG_HOME": "/cfg"])
                == ["/cfg/vgpu-migrate/config.yaml", "/etc/vgpu-migrate/config.yaml"])
    }
}
