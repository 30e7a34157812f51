import Foundation
import Testing
import VGPUMigrationCore
import VGPUTestSupport

@testable import VGPUMigrationCLI

func inspect(_ arguments: [String]) throws -> ProcessOutcome {
    try ProductRunner.run("vgpu-migrate", ["inspect", "--policies", TestData.policies.path] + arguments)
}

func fixture(_ name: String) -> String {
    TestData.fixtures.appendingPathComponent("hosts/\(name)").path
}

/// The `inspect --json` document as plain JSON objects, the way a script reads it.
func inspectJSON(_ host: String) throws -> [String: Any] {
    let outcome = try inspect(["--sysfs-root", fixture(host), "--json"])
    #expect(outcome.status == 0, "\(outcome.standardError)")
    return try #require(try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as? [String: Any])
}

func types(ofGPU address: String, in document: [String: Any]) throws -> [String: [String: Any]] {
    let gpus = try #require(document["gpus"] as? [[String: Any]])
    let gpu = try #require(gpus.first { $0["address"] as? String == address })
    let list = try #require(gpu["vgpu_types"] as? [[String: Any]])
    return Dictionary(uniqueKeysWithValues: list.map { ($0["id"] as! String, $0) })
}

@Suite("vgpu-migrate inspect")
struct InspectCommandTests {
    @Test(
        "JSON of every fixture host: type id, name, free and used per physical GPU",
        arguments: [
            ("t4-a", "0000:3b:00.0", "nvidia-232", "GRID T4-4Q", 3, 1),
            ("t4-b", "0000:3b:00.0", "nvidia-230", "GRID T4-1Q", 16, 0),
            ("t4-full", "0000:3b:00.0", "nvidia-232", "GRID T4-4Q", 0, 4),
            ("t4-c-older-driver", "0000:3b:00.0", "nvidia-321", "GRID T4-16C", 1, 0),
            ("a100-40gb", "0000:ca:00.0", "nvidia-472", "GRID A100-20C", 1, 1),
            ("a100-40gb", "0000:ca:00.0", "nvidia-468", "GRID A100-4C", 0, 0),
            ("l40s", "0000:41:00.0", "1152", "NVIDIA L40S-8Q", 4, 2),
            ("l40s", "0000:41:00.0", "1162", "NVIDIA L40S-8A", 4, 0),
            ("h100-pcie", "0000:9b:00.0", "1306", "NVIDIA H100-40C", 1, 1),
            ("harvester-a2-l40s", "0000:08:01.7", "nvidia-746", "NVIDIA A2-4Q", 1, 0),
            ("harvester-a2-l40s", "0000:26:00.4", "2164", "NVIDIA L40S-3B", 1, 0),
        ])
    func jsonCounts(host: String, gpu: String, type: String, name: String, free: Int, used: Int) throws {
        let entry = try #require(try types(ofGPU: gpu, in: try inspectJSON(host))[type])
        #expect(entry["name"] as? String == name)
        #expect(entry["free"] as? Int == free)
        #expect(entry["used"] as? Int == used)
    }

    @Test("the A2 capture lists 15 types on VF 0000:08:01.7")
    func harvesterTypeCount() throws {
        #expect(try types(ofGPU: "0000:08:01.7", in: try inspectJSON("harvester-a2-l40s")).count == 15)
    }

    @Test("inspect of the shared capture itself gives the same GPUs as the fixture copy")
    func sharedCapture() throws {
        let shared = TestData.realdata.appendingPathComponent("nvidia/harvester-pcidevices-testdata").path
        let direct = try inspect(["--sysfs-root", shared, "--json"])
        let copy = try inspect(["--sysfs-root", fixture("harvester-a2-l40s"), "--json"])
        #expect(direct.status == 0, "\(direct.standardError)")
        let directHost = try JSONDecoder().decode(HostInventory.self, from: Data(direct.standardOutput.utf8))
        let copyHost = try JSONDecoder().decode(HostInventory.self, from: Data(copy.standardOutput.utf8))
        #expect(directHost.gpus == copyHost.gpus)
        #expect(directHost.gpus.map(\.address.description) == ["0000:08:01.7", "0000:26:00.4"])
        #expect(directHost.gpus.first?.vgpuTypes.count == 15)
        #expect(directHost.gpus.last?.vgpuTypes.count == 23)
    }

    @Test("the JSON document has the documented top-level shape and decodes back")
    func documentedShape() throws {
        let document = try inspectJSON("t4-a")
        #expect(document["schema_version"] as? Int == 1)
        #expect(document["kernel_release"] as? String == "6.8.0-45-generic")
        #expect(document["nvidia_driver_version"] as? String == "550.90.05")
        #expect(document["hostname"] as? String == "gpu-t4-a")
        #expect((document["source"] as? [String: Any])?["kind"] as? String == "sysfs")
        let gpu = try #require((document["gpus"] as? [[String: Any]])?.first)
        for key in ["address", "board", "interface", "sriov", "functions", "vgpu_types", "vgpus", "pci"] {
            #expect(gpu[key] != nil, "gpus[].\(key)")
        }
        let board = try #require(gpu["board"] as? [String: Any])
        #expect(board["name"] as? String == "T4")
        #expect((board["architecture"] as? [String: Any])?["dirty_page_tracking"] as? Bool == false)
        let vgpu = try #require((gpu["vgpus"] as? [[String: Any]])?.first)
        #expect(vgpu["id"] as? String == "5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10")
        #expect(vgpu["type_id"] as? String == "nvidia-232")
        let type = try #require(try types(ofGPU: "0000:3b:00.0", in: document)["nvidia-233"])
        for key in ["id", "name", "free", "used", "max_instances", "framebuffer_mib", "blocked_by"] {
            #expect(type[key] != nil, "vgpu_types[].\(key)")
        }
        // The same document is a saved snapshot the other commands can read.
        let outcome = try inspect(["--sysfs-root", fixture("t4-a"), "--json"])
        let decoded = try JSONDecoder().decode(HostInventory.self, from: Data(outcome.standardOutput.utf8))
        #expect(decoded.gpus.first?.capacity(ofType: "nvidia-232")?.free == 3)
        #expect(try InventoryReport.json(decoded) == outcome.standardOutput.trimmingCharacters(in: .newlines))
    }

    @Test("the human table shows the board, the counts and the vGPUs")
    func textOutput() throws {
        let outcome = try inspect(["--sysfs-root", fixture("l40s")])
        #expect(outcome.status == 0)
        let text = outcome.standardOutput
        #expect(text.contains("Host gpu-l40s-1"))
        #expect(text.contains("GPU 0000:41:00.0  NVIDIA L40S [L40S], Ada Lovelace, dirty-page tracking"))
        #expect(text.contains("NVIDIA vendor-specific VFIO on 32 virtual functions; 2 vGPUs in use"))
        let row = try #require(text.split(separator: "\n").first { $0.contains("1152  NVIDIA L40S-8Q") })
        #expect(row.split(separator: " ").suffix(4) == ["8192", "6", "2", "4"])
        #expect(text.contains("0000:41:00.4  NVIDIA L40S-8Q (1152)"))
    }

    @Test("reads a host through libvirt with --connect")
    func throughLibvirt() throws {
        let uri = "test://" + TestData.fixtures.appendingPathComponent("libvirt/test-node-t4-a100.xml").path
        let outcome = try inspect(["--connect", uri, "--json"])
        #expect(outcome.status == 0, "\(outcome.standardError)")
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(outcome.standardOutput.utf8)) as? [String: Any])
        #expect((document["source"] as? [String: Any])?["kind"] as? String == "libvirt")
        #expect(try types(ofGPU: "0000:3b:00.0", in: document)["nvidia-232"]?["free"] as? Int == 3)
    }

    @Test(
        "bad input ends with a clear error and the documented exit code",
        arguments: [
            (
                ["--sysfs-root", "/nonexistent/tree"], Int32(2),
                "the sysfs root /nonexistent/tree of the host is not a directory"
            ),
            (["--frobnicate"], 2, "Unknown option '--frobnicate'"),
            (
                ["--connect", "test:///nonexistent/node.xml"], 3,
                "cannot reach the host through libvirt at test:///nonexistent/node.xml"
            ),
        ])
    func badInput(arguments: [String], status: Int32, fragment: String) throws {
        let outcome = try inspect(arguments)
        #expect(outcome.status == status, "\(outcome.standardError)")
        #expect(outcome.standardError.contains(fragment), "\(outcome.standardError)")
        #expect(outcome.standardOutput.isEmpty)
    }

    @Test("garbage in sysfs exits 1 naming the file")
    func garbageTree() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("vgpu-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.copyItem(at: URL(fileURLWithPath: fixture("t4-b")), to: directory)
        let file =
            "sys/devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/mdev_supported_types/nvidia-230/available_instances"
        try "sixteen\n".write(to: directory.appendingPathComponent(file), atomically: true, encoding: .utf8)
        let outcome = try inspect(["--sysfs-root", directory.path])
        #expect(outcome.status == 1)
        #expect(outcome.standardError.contains("mdev_supported_types/nvidia-230/available_instances"))
        #expect(outcome.standardError.contains("found 'sixteen'"))
    }

    @Test("a broken board table exits 2 naming the file and line")
    func brokenPolicies() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vgpu-policies-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try "architectures: {}\nboards:\n  - nme: T4\n".write(
            to: directory.appendingPathComponent("gpu-boards.yaml"), atomically: true, encoding: .utf8)
        let outcome = try ProductRunner.run(
            "vgpu-migrate", ["inspect", "--policies", directory.path, "--sysfs-root", fixture("t4-a")])
        #expect(outcome.status == 2)
        #expect(outcome.standardError.contains("gpu-boards.yaml:3:5: unknown key 'nme'"), "\(outcome.standardError)")
    }
}
