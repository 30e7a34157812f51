import Foundation
import Testing
import VGPUTestSupport

@testable import VGPUMigrationCore

/// Domain XMLs libvirt's own test suite refuses to parse (qemuxmlconftest PARSE_ERROR cases).
let domainsLibvirtRejects: [String: String] = [
    "hostdev-mdev-src-address-invalid.xml": "no 'uuid' attribute",
    "hostdev-mdev-invalid-target-address.xml": "guest address type 'drive'",
    "hostdev-mdev-duplicate.xml": "given to the guest twice",
]

@Suite("Guest domain model")
struct GuestDomainTests {
    /// Every XML file under the shared libvirt and nova data whose root is a domain (or a
    /// migration cookie carrying one).
    static func realDomainFiles() throws -> [URL] {
        var files: [URL] = []
        for folder in ["libvirt", "nova"] {
            for url in try TestData.files(under: TestData.realdata.appendingPathComponent(folder), suffix: ".xml") {
                let root = try XMLReader.parseElements(try TestData.text(url)).first?.name
                if root == "domain" || root == "qemu-migration" { files.append(url) }
            }
        }
        return files
    }

    @Test("the shared data holds the domain XMLs this suite expects")
    func realDataIsPresent() throws {
        let names = Set(try Self.realDomainFiles().map(\.lastPathComponent))
        #expect(names.count >= 12, "found \(names.sorted()) under \(TestData.realdata.path)")
        for rejected in domainsLibvirtRejects.keys { #expect(names.contains(rejected)) }
    }

    @Test("parses every real domain XML libvirt accepts, rejects the ones it refuses")
    func parsesEveryRealDomain() throws {
        for url in try Self.realDomainFiles() {
            let text = try TestData.text(url)
            let document = try XMLReader.parseDocument(text)
            let element = document.root.name == "domain" ? document.root : try #require(document.root.child("domain"))
            if let expected = domainsLibvirtRejects[url.lastPathComponent] {
                #expect(throws: DomainXMLError.self, "\(url.lastPathComponent)") { try GuestDomain(element: element) }
                do {
                    _ = try GuestDomain(element: element)
                } catch {
                    #expect(error.message.contains(expected), "\(url.lastPathComponent): \(error)")
                    #expect(error.position != nil)
                }
            } else {
                let domain = try GuestDomain(element: element)
                #expect(!domain.name.isEmpty)
                #expect(domain.memoryBytes > 0)
            }
        }
    }

    @Test("the .err file's reason matches ours for the missing mdev uuid")
    func matchesLibvirtErrorFile() throws {
        let folder = TestData.realdata.appendingPathComponent("libvirt/tests/qemuxmlconfdata")
        let libvirtMessage = try TestData.text(
            folder.appendingPathComponent("hostdev-mdev-src-address-invalid.x86_64-latest.err"))
        #expect(libvirtMessage.contains("Missing required attribute 'uuid' in element 'address'"))
        #expect {
            try GuestDomain.parse(
                xml: try TestData.text(folder.appendingPathComponent("hostdev-mdev-src-address-invalid.xml")))
        } throws: { error in
            (error as? DomainXMLError)?.message.contains("Missing required attribute 'uuid' in element 'address'")
                == true
        }
    }

    @Test("reads identity, memory, vCPUs and both kinds of vGPU hostdev")
    func readsCeemsInstance() throws {
        let url = TestData.realdata.appendingPathComponent("libvirt/ceems-qemu/instance-00000003.xml")
        let domain = try GuestDomain.parse(xml: try TestData.text(url))
        #expect(domain.name == "instance-00000003")
        #expect(domain.hypervisorType == "kvm")
        #expect(
            domain.mdevHostdevs.map(\.source) == [
                .mdev(uuid: "64c3c4ae-44e1-45b8-8d46-5f76a1fa9824"),
                .mdev(uuid: "f9702ffa-fa28-414e-a52f-e7831fd5ce41"),
            ])
        #expect(domain.pciHostdevs.map(\.source) == [.pci(PCIAddress("0000:89:00.0")!)])
        #expect(domain.mdevHostdevs.allSatisfy { $0.model == "vfio-pci" })
        let instance1 = try GuestDomain.parse(
            xml: try TestData.text(TestData.realdata.appendingPathComponent("libvirt/ceems-qemu/instance-00000001.xml"))
        )
        #expect(instance1.memoryBytes == 524_288 * 1024)
        #expect(instance1.vcpus == 1)
        #expect(instance1.uuid == "b674a0a2-c300-4dc6-8c9c-65df16da6d69")
    }

    @Test("reads display and ramfb of an mdev hostdev")
    func readsDisplayAndRamfb() throws {
        let url = TestData.realdata.appendingPathComponent(
            "libvirt/tests/qemuxml2argvdata/hostdev-mdev-display-ramfb.xml")
        let hostdev = try #require(try GuestDomain.parse(xml: try TestData.text(url)).mdevHostdevs.first)
        #expect(hostdev.display == true)
        #expect(hostdev.ramfb == true)
    }

    @Test("reads vCPU current count and memory units of the migration cookie's domain")
    func readsCookieDomain() throws {
        let url = TestData.realdata.appendingPathComponent(
            "libvirt/tests/qemumigrationcookiexmldata/full-xml2xml-out.xml")
        let cookie = try XMLReader.parseDocument(try TestData.text(url))
        let domain = try GuestDomain(element: try #require(cookie.root.child("domain")))
        #expect(domain.vcpus == 8)
        #expect(domain.currentVCPUs == 2)
        #expect(domain.memoryBytes == 1_024_000 * 1024)
    }

    @Test(
        "refuses domains that cannot be migrated safely, naming the problem",
        arguments: [
            ("<domain><name>a</name><memory>1</memory><vcpu>1</vcpu></domain>", "no 'type'"),
            ("<domain type='kvm'><memory>1</memory><vcpu>1</vcpu></domain>", "no <name>"),
            ("<domain type='kvm'><name>a</name><vcpu>1</vcpu></domain>", "no <memory>"),
            (
                "<domain type='kvm'><name>a</name><memory unit='parsec'>1</memory><vcpu>1</vcpu></domain>",
                "unknown unit"
            ),
            ("<domain type='kvm'><name>a</name><memory>x</memory><vcpu>1</vcpu></domain>", "not a whole number"),
            ("<domain type='kvm'><name>a</name><memory>1</memory><vcpu>0</vcpu></domain>", "positive count"),
            (
                "<domain type='kvm'><name>a</name><memory>1</memory><vcpu>1</vcpu><devices><hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='nope'/></source></hostdev></devices></domain>",
                "not a UUID"
            ),
            (
                "<domain type='kvm'><name>a</name><memory>1</memory><vcpu>1</vcpu><devices><hostdev mode='subsystem' type='mdev'><source><address uuid='53764d0e-85a0-42b4-af5c-2046b460b1dc'/></source></hostdev></devices></domain>",
                "no 'model'"
            ),
            (
                "<domain type='kvm'><name>a</name><memory>1</memory><vcpu>1</vcpu><devices><hostdev mode='subsystem' type='pci'><source><address bus='0x300' slot='0' function='0'/></source></hostdev></devices></domain>",
                "PCI bus"
            ),
        ])
    func refusesBadDomains(xml: String, fragment: String) {
        #expect {
            try GuestDomain.parse(xml: xml)
        } throws: { error in
            (error as? DomainXMLError)?.message.contains(fragment) == true
        }
    }
}
