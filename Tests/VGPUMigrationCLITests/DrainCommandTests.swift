import Foundation
import Testing
import VGPUMigrationCore
import VGPUMigrationStorage
import VGPUTestSupport

@testable import VGPUMigrationCLI

@Suite("vgpu-migrate drain --dry-run: the plan for every running VM of a host")
struct DrainCommandTests {
    /// A fixture host's facts as `inspect --json` writes them, with what libvirt would add
    /// (libvirt 9.0.0, QEMU 8.2.0, 64 GiB free) and a UUID of its own.
    func snapshot(_ fixture: String, in directory: URL) throws -> String {
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            ["inspect", "--sysfs-root", TestData.fixtures.appendingPathComponent("hosts/\(fixture)").path, "--json"])
        var facts = try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as! [String: Any]
        facts["libvirt_version"] = "9.0.0"
        facts["hypervisor_version"] = "8.2.0"
        facts["free_memory_bytes"] = 64 << 30
        facts["host_uuid"] = UUID().uuidString.lowercased()
        let path = directory.appendingPathComponent("\(fixture).json")
        try JSONSerialization.data(withJSONObject: facts).write(to: path)
        return path.path
    }

    /// The drained host `src`: the `t4-full` fixture's four GRID T4-4Q mdevs, each used by a VM
    /// running in libvirt's test driver, and one VM without a vGPU. Destinations `t4-b` (empty T4),
    /// `t4-dual` (room for 3 more T4-4Q on a GPU that has one, and an empty GPU), `t4-c` (older
    /// driver), `spare` (cordoned) and `down` (its agent does not answer).
    func setting(_ directory: URL) throws -> [String] {
        let mdevs = (0..<4).map { "0c9e8d7f-6a5b-4c3d-9e2f-1a0b9c8d7e0\($0)" }
        var domains = mdevs.enumerated().map { number, uuid in
            """
              <domain type='test'><name>vm-\(number + 1)</name><memory>4194304</memory><os><type>hvm</type></os>
                <devices><hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='\(uuid)'/></source></hostdev></devices>
              </domain>
            """
        }
        domains.append(
            "  <domain type='test'><name>vm-plain</name><memory>1048576</memory><os><type>hvm</type></os></domain>")
        let node = directory.appendingPathComponent("src-node.xml")
        try "<node>\n\(domains.joined(separator: "\n"))\n</node>\n".write(to: node, atomically: true, encoding: .utf8)
        let inventory = directory.appendingPathComponent("hosts.yaml")
        try """
        defaults:
          bandwidth_mib_per_s: 1250
        hosts:
          src:
            facts_file: \(try snapshot("t4-full", in: directory))
            libvirt_uri: test://\(node.path)
          t4-b:
            facts_file: \(try snapshot("t4-b", in: directory))
          t4-dual:
            facts_file: \(try snapshot("t4-dual", in: directory))
          t4-c:
            facts_file: \(try snapshot("t4-c-older-driver", in: directory))
          spare:
            facts_file: \(try snapshot("t4-b", in: directory))
          down:
            agent_url: http://127.0.0.1:1
        """.write(to: inventory, atomically: true, encoding: .utf8)
        let database = directory.appendingPathComponent("history.sqlite").path
        _ = try ProductRunner.run(
            "vgpu-migrate",
            ["cordon", "spare", "--reason", "fan", "--inventory", inventory.path, "--database", database])
        return ["--inventory", inventory.path, "--database", database, "--policies", TestData.policies.path]
    }

    @Test("every VM is placed: capacity booked across the plan, cordoned and unreachable hosts left out (exit 0)")
    func everyVMPlaced() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)

        let outcome = try ProductRunner.run("vgpu-migrate", ["drain", "src", "--dry-run", "--json"] + common)
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let report = try decodedJSON(DrainPlanReport.self, from: outcome.standardOutput)
        #expect(report.host == "src" && report.parallel == 5 && report.outboundLimit == 2)
        let plan = report.plan
        #expect(plan.unplaced == [])
        #expect(Set(plan.placements.map(\.vm)) == ["vm-1", "vm-2", "vm-3", "vm-4", "vm-plain"])
        // Three T4-4Q fill the GPU of t4-dual that already carries one; the fourth takes an
        // empty GPU on the host with fewer moves planned into it.
        let vgpus = plan.placements.flatMap { placement in placement.vgpus.map { (placement.destination, $0.gpu) } }
        #expect(vgpus.filter { $0 == ("t4-dual", DeviceAddress("0000:3b:00.0")!) }.count == 3, "\(vgpus)")
        #expect(vgpus.filter { $0 == ("t4-b", DeviceAddress("0000:3b:00.0")!) }.count == 1, "\(vgpus)")
        let destinations = Set(plan.placements.map(\.destination))
        #expect(destinations.isDisjoint(with: ["spare", "down"]), "\(destinations)")
        // t4-c's older driver refuses the vGPU VMs; the VM without a vGPU may go there.
        #expect(plan.placements.filter { $0.destination == "t4-c" }.allSatisfy { $0.vm == "vm-plain" })
        #expect(plan.skipped.map(\.host) == ["down", "spare"])
        #expect(plan.skipped.first { $0.host == "spare" }?.reason.hasPrefix("cordoned: fan, by ") == true)
        #expect(plan.skipped.first { $0.host == "down" }?.reason.contains("cannot reach host down's agent") == true)
        #expect(report.expectedSeconds > 0)

        let text = try ProductRunner.run("vgpu-migrate", ["drain", "src", "--dry-run"] + common)
        #expect(text.status == 0, "\(text.standardError)")
        let lines = text.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first == "Drain plan for src (policy adaptive): 5 running VMs, 5 placed, 0 cannot be moved")
        #expect(lines.contains { $0.hasPrefix("  VM ") && $0.contains("DESTINATION") && $0.contains("DOWNTIME") })
        #expect(lines.contains { $0.contains("vm-1") && $0.contains("GRID T4-4Q") })
        #expect(lines.contains { $0.hasPrefix("Expected drain time: ") && $0.contains("(5 at once, 2 out of src") })
        #expect(lines.contains("Not considered:") && lines.contains { $0.hasPrefix("  spare: cordoned: fan") })
        #expect(lines.last == "Dry run: nothing was cordoned or moved.")
        // Nothing was cordoned.
        let cordons = try ProductRunner.run("vgpu-migrate", ["cordon", "--json"] + common.prefix(4))
        #expect(try decodedJSON([HostCordon].self, from: cordons.standardOutput).map(\.host) == ["spare"])
    }

    @Test("VMs no destination can take are named with each host's reason (exit 1); the others are still placed")
    func someCannotMove() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)

        let outcome = try ProductRunner.run("vgpu-migrate", ["drain", "src", "--to", "t4-c", "--dry-run"] + common)
        #expect(outcome.status == 1, "\(outcome.standardError)")
        let out = outcome.standardOutput
        #expect(out.hasPrefix("Drain plan for src (policy adaptive): 5 running VMs, 1 placed, 4 cannot be moved\n"))
        #expect(out.contains("Cannot be moved:\n  vm-1\n    t4-c: driver.version: "), "\(out)")
        #expect(out.contains("535.183.04"))
        #expect(out.contains("vm-plain") && out.contains("t4-c"))
    }

    @Test("a host that is not in the inventory, a run without --dry-run, and bad options are refused (exit 2)")
    func refusals() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let common = try setting(directory)
        for (arguments, message) in [
            (["drain", "nowhere", "--dry-run"], "host 'nowhere' is not in the inventory"),
            (["drain", "--dry-run"], "give HOST to drain, or --resume ID"),
            (["drain", "src", "--resume", "ab12"], "give HOST to drain, or --resume ID"),
            (["drain", "--resume", "ab12"], "no drain ab12 in the history"),
            (["drain", "--resume", "../x"], "'../x' is not a drain id (hex digits and '-')"),
            (["drain", "t4-b", "--dry-run"], "host t4-b has no libvirt_uri in the inventory"),
            (["drain", "src", "--to", "src", "--dry-run"], "--to names src, the host to empty"),
            (["drain", "src", "--parallel", "0", "--dry-run"], "--parallel must be between 1 and 64"),
            (["drain", "src", "--to", "nowhere", "--dry-run"], "host 'nowhere' is not in the inventory"),
        ] {
            let outcome = try ProductRunner.run("vgpu-migrate", arguments + common)
            #expect(outcome.status == 2, "\(arguments): \(outcome.standardOutput)\(outcome.standardError)")
            #expect(outcome.standardError.contains(message), "\(arguments): \(outcome.standardError)")
        }
    }

    @Test("an early refusal exits cleanly while libvirt's library still loads in the background (30 runs)")
    func earlyExit() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inventory = directory.appendingPathComponent("hosts.yaml")
        try "hosts:\n  a:\n    libvirt_uri: test:///default\n".write(to: inventory, atomically: true, encoding: .utf8)
        // Exiting while the library loaded on another thread crashed (SIGSEGV) about one run in four.
        let statuses = try (0..<30).map { _ in
            try ProductRunner.run(
                "vgpu-migrate", ["drain", "nowhere", "--dry-run", "--inventory", inventory.path]
            ).status
        }
        #expect(statuses == Array(repeating: 2, count: 30))
    }

    @Test("a drained host whose libvirt does not answer exits 3")
    func unreachableSource() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inventory = directory.appendingPathComponent("hosts.yaml")
        try """
        hosts:
          src:
            libvirt_uri: test:///nonexistent/node.xml
          t4-b:
            sysfs_root: \(TestData.fixtures.appendingPathComponent("hosts/t4-b").path)
        """.write(to: inventory, atomically: true, encoding: .utf8)
        let outcome = try ProductRunner.run(
            "vgpu-migrate",
            ["drain", "src", "--dry-run", "--inventory", inventory.path, "--policies", TestData.policies.path])
        #expect(outcome.status == 3, "\(outcome.standardOutput)\(outcome.standardError)")
        #expect(outcome.standardError.contains("src"), "\(outcome.standardError)")
    }
}

@Suite("history --drains and show DRAIN_ID")
struct DrainHistoryTests {
    @Test("drains are listed newest first; show prints a drain's moves and their migrations; --svg is refused")
    func listAndShow() async throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = directory.appendingPathComponent("history.sqlite").path
        let empty = try ProductRunner.run("vgpu-migrate", ["history", "--drains", "--database", database])
        #expect(empty.status == 0 && empty.standardOutput == "No drains.\n", "\(empty.standardError)")

        let store = try SQLiteHistoryStore(path: database)
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        var migration = MigrationRecord(
            id: "5e0c1f2a-0000-4000-8000-000000000001", vm: "vm-1", source: "src", destination: "dst",
            policy: "adaptive", at: start)
        try await store.begin(migration)
        for (state, reason) in [
            (MigrationState.checking, "pre-flight"), (.reserving, "ok"), (.migrating, "reserved"),
            (.completing, "switched over"), (.completed, "done"),
        ] {
            try migration.transition(to: state, reason: reason, at: start.addingTimeInterval(6))
        }
        try await store.save(migration)
        let plan = DrainPlan(
            policy: "adaptive",
            placements: [.init(vm: "vm-1", source: "src", destination: "dst", vgpus: [], estimate: nil, warnings: [])],
            unplaced: [.init(vm: "vm-2", source: "src", reasons: ["dst: vgpu.capacity: full"])], skipped: [])
        var drain = DrainRecord(
            id: "0b6f0000-0000-4000-8000-00000000000d", host: "src", policy: "adaptive", parallel: 2, at: start,
            plan: plan)
        drain.update(.init(vm: "vm-1", destination: "dst", state: .moved, migrations: [migration.id]), at: start)
        drain.end(at: start.addingTimeInterval(7))
        try await store.saveDrain(drain)

        let listed = try ProductRunner.run("vgpu-migrate", ["history", "--drains", "--database", database])
        let rows = listed.standardOutput.split(separator: "\n")
        #expect(rows.first?.hasPrefix("ID        HOST  STATUS      MOVED") == true, "\(listed.standardOutput)")
        #expect(
            rows.dropFirst().first?.hasPrefix("0b6f0000  src   incomplete    1/2") == true, "\(listed.standardOutput)")
        let json = try ProductRunner.run("vgpu-migrate", ["history", "--drains", "--json", "--database", database])
        #expect(try decodedJSON([DrainRecord].self, from: json.standardOutput) == [drain])

        let shown = try ProductRunner.run("vgpu-migrate", ["show", "0b6f", "--database", database])
        #expect(shown.status == 0, "\(shown.standardError)")
        #expect(shown.standardOutput.hasPrefix("Drain 0b6f0000-0000-4000-8000-00000000000d\n"))
        #expect(
            shown.standardOutput.contains(
                "  vm-1 → dst: moved\n    migration 5e0c1f2a-0000-4000-8000-000000000001: dst, completed"))
        #expect(shown.standardOutput.contains("  vm-2 → -: unplaced (dst: vgpu.capacity: full)"))
        let svg = try ProductRunner.run(
            "vgpu-migrate",
            ["show", "0b6f", "--svg", directory.appendingPathComponent("x.svg").path, "--database", database])
        #expect(svg.status == 2 && svg.standardError.contains("is a drain: --svg draws one migration"))
        let filtered = try ProductRunner.run(
            "vgpu-migrate", ["history", "--drains", "--vm", "x", "--database", database])
        #expect(filtered.status == 2 && filtered.standardError.contains("--drains lists the newest drains"))
        // A migration's id still shows the migration.
        let one = try ProductRunner.run("vgpu-migrate", ["show", "5e0c", "--database", database])
        #expect(one.standardOutput.hasPrefix("Migration 5e0c1f2a"), "\(one.standardOutput)")
    }
}
