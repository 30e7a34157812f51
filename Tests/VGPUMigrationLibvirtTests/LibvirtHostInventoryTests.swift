import Foundation
import Testing
import VGPUMigrationCore
import VGPUPolicies
import VGPUTestSupport

@testable import VGPUMigrationLibvirt

func boardCatalog() throws -> GPUBoardCatalog {
    let url = TestData.policies.appendingPathComponent(GPUBoardCatalogFile.fileName)
    return try GPUBoardCatalogFile.parse(try TestData.text(url), file: url.path)
}

/// libvirt's test driver loaded with a node of the project's own (Fixtures/libvirt).
func testDriverURI(_ fixture: String) -> String {
    "test://" + TestData.fixtures.appendingPathComponent("libvirt/\(fixture)").path
}

@Suite("Host inventory through libvirt node devices")
struct LibvirtHostInventoryTests {
    @Test("reads mdev parents, SR-IOV VFs and mdevs through the real libvirt library")
    func readsNodeDevices() async throws {
        let connection = try await LibvirtConnection.open(uri: testDriverURI("test-node-t4-a100.xml"))
        let host = try await LibvirtHostInventory.read(connection: connection, catalog: try boardCatalog())
        #expect(host.source == InventorySource(kind: .libvirt, location: connection.uri))
        #expect(host.libvirtVersion?.isEmpty == false)
        #expect(host.gpus.map(\.address.description) == ["0000:3b:00.0", "0000:ca:00.0"])

        let t4 = try #require(host.gpus.first)
        #expect(t4.board?.name == "T4")
        #expect(t4.vgpus.map(\.id) == ["5b1f0a7c-3e2d-4c1b-8a9f-6e5d4c3b2a10"])
        let q4 = try #require(t4.capacity(ofType: "nvidia-232"))
        #expect((q4.free, q4.used, q4.maxInstances) == (3, 1, 4))
        #expect(t4.capacity(ofType: "nvidia-233")?.blockedBy?.hasPrefix("homogeneity") == true)

        let a100 = try #require(host.gpus.last)
        #expect(a100.sriov)
        #expect(a100.board?.name == "A100-40GB")
        #expect(a100.functions.map(\.address.description) == ["0000:ca:00.4", "0000:ca:00.5"])
        let c20 = try #require(a100.capacity(ofType: "nvidia-472"))
        #expect((c20.free, c20.used, c20.maxInstances) == (1, 1, 2))
        #expect(host.diagnostics.contains { $0.message.contains("read through libvirt") })
    }

    @Test("libvirt and hypervisor versions decode major.minor.micro")
    func versions() async throws {
        let connection = try await LibvirtConnection.open(uri: "test:///default")
        let library = try await connection.libraryVersion()
        #expect(library >= LibvirtVersion(encoded: 1_000_000))
        #expect(LibvirtVersion(encoded: 8_006_000).description == "8.6.0")
        #expect(LibvirtVersion(encoded: 7_002_000) < LibvirtVersion(encoded: 8_001_000))
        #expect(try await connection.hostname().isEmpty == false)
    }

    @Test("a connection that cannot be opened is an error with libvirt's message")
    func openFailure() async throws {
        let missing = TestData.fixtures.appendingPathComponent("libvirt/no-such-file.xml").path
        await #expect {
            _ = try await LibvirtConnection.open(uri: "test://" + missing)
        } throws: { error in
            guard let error = error as? LibvirtError else { return false }
            return error.code > 0 && error.operation.contains("connecting to test://") && !error.message.isEmpty
        }
    }
}
