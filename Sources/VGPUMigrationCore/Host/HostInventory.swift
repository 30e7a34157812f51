/// How a host exposes vGPUs.
package enum VGPUInterface: String, Sendable, Hashable, Codable {
    /// VFIO mediated devices: types under `mdev_supported_types`, devices by UUID.
    case mdev
    /// NVIDIA vendor-specific VFIO: one vGPU per SR-IOV VF, chosen through `current_vgpu_type`.
    case vendorVFIO = "vendor-vfio"
}

/// A vGPU type as the host describes it.
package struct VGPUTypeInfo: Sendable, Hashable, Codable {
    /// `nvidia-232` for mdev types; the decimal type number (`1155`) for vendor-specific VF types.
    package var id: String
    /// `GRID T4-4Q`, `NVIDIA L40S-8Q`; nil when the host does not name the type.
    package var name: String?
    package var profile: VGPUProfile?
    package var framebufferMiB: UInt64?
    /// `max_instance` from the mdev description (per GPU), when the host states it.
    package var descriptionMaxInstances: Int?
    package var heads: Int?
    package var maxResolution: String?
    package var frameRateLimit: Int?
    /// `device_api` of an mdev type (`vfio-pci`).
    package var deviceAPI: String?

    package init(
        id: String, name: String?, description: MdevTypeDescription? = nil, deviceAPI: String? = nil
    ) {
        self.id = id
        self.name = name
        self.profile = name.flatMap { VGPUProfile(typeName: $0) }
        self.framebufferMiB = description?.framebufferMiB ?? profile?.framebufferMiB
        self.descriptionMaxInstances = description?.maxInstances
        self.heads = description?.heads
        self.maxResolution = description?.maxResolution
        self.frameRateLimit = description?.frameRateLimit
        self.deviceAPI = deviceAPI
    }

    enum CodingKeys: String, CodingKey {
        case id, name, profile
        case framebufferMiB = "framebuffer_mib"
        case descriptionMaxInstances = "description_max_instances"
        case heads
        case maxResolution = "max_resolution"
        case frameRateLimit = "frame_rate_limit"
        case deviceAPI = "device_api"
    }

    /// Sort key: the number in the id, then the id.
    var sortKey: (Int, String) {
        (Int(id.drop(while: { !$0.isASCIIDigit })) ?? Int.max, id)
    }
}

/// A type offered on one PCI function, with how many more the function can take now.
package struct VGPUTypeOffer: Sendable, Hashable, Codable {
    package var typeID: String
    /// `available_instances` of an mdev type; 1 for a type listed in a free VF's
    /// `creatable_vgpu_types`.
    package var availableInstances: Int

    package init(typeID: String, availableInstances: Int) {
        self.typeID = typeID
        self.availableInstances = availableInstances
    }

    enum CodingKeys: String, CodingKey {
        case typeID = "type_id"
        case availableInstances = "available_instances"
    }
}

/// A device that carries vGPUs: an mdev parent (a GPU, one of its SR-IOV VFs, or a parent of
/// another kind such as mtty's virtual device) or a VF with NVIDIA's vendor-specific files.
package struct VGPUFunction: Sendable, Hashable, Codable {
    package var address: DeviceAddress
    /// The function's PF, when it is an SR-IOV VF (`physfn` link).
    package var physicalFunction: PCIAddress?
    package var interface: VGPUInterface
    package var offers: [VGPUTypeOffer]
    /// Vendor-specific VF only: the vGPU type it carries now (`current_vgpu_type`), nil when free.
    package var currentVGPUTypeID: String?

    package init(
        address: DeviceAddress, physicalFunction: PCIAddress?, interface: VGPUInterface, offers: [VGPUTypeOffer],
        currentVGPUTypeID: String? = nil
    ) {
        self.address = address
        self.physicalFunction = physicalFunction
        self.interface = interface
        self.offers = offers
        self.currentVGPUTypeID = currentVGPUTypeID
    }

    enum CodingKeys: String, CodingKey {
        case address
        case physicalFunction = "physical_function"
        case interface
        case offers
        case currentVGPUTypeID = "current_vgpu_type"
    }
}

/// A vGPU that exists on the host.
package struct ExistingVGPU: Sendable, Hashable, Codable {
    /// The mdev UUID, or the VF address for a vendor-specific VF vGPU.
    package var id: String
    package var interface: VGPUInterface
    package var typeID: String
    package var typeName: String?
    /// The mdev parent or the VF.
    package var function: DeviceAddress

    package init(id: String, interface: VGPUInterface, typeID: String, typeName: String?, function: DeviceAddress) {
        self.id = id
        self.interface = interface
        self.typeID = typeID
        self.typeName = typeName
        self.function = function
    }

    enum CodingKeys: String, CodingKey {
        case id, interface
        case typeID = "type_id"
        case typeName = "type_name"
        case function
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let interface = try container.decode(VGPUInterface.self, forKey: .interface)
        self.init(
            id: try container.decode(String.self, forKey: .id), interface: interface,
            typeID: try container.decode(String.self, forKey: .typeID),
            typeName: try container.decodeIfPresent(String.self, forKey: .typeName),
            function: try container.decodeFunction(.function, of: interface))
    }

    /// How a guest refers to this vGPU in its `<hostdev>`.
    package var hostdevSource: HostdevSource {
        switch interface {
        case .mdev: .mdev(uuid: id)
        case .vendorVFIO:
            // A vendor-specific vGPU is its VF: the id is the VF's PCI address.
            if let address = PCIAddress(id) ?? function.pciAddress { .pci(address) } else { .mdev(uuid: id) }
        }
    }
}

/// What a physical GPU can still take of one vGPU type.
package struct VGPUTypeCapacity: Sendable, Hashable, Codable {
    package var type: VGPUTypeInfo
    /// How many more vGPUs of this type can be created on this physical GPU now.
    package var free: Int
    /// vGPUs of this type that exist on this physical GPU.
    package var used: Int
    /// The most this GPU carries of this type (from the mdev description, else the board
    /// table); nil when neither says.
    package var maxInstances: Int?
    /// Why `free` is 0 while the type is listed, in the operator's words.
    package var blockedBy: String?

    enum CodingKeys: String, CodingKey {
        case free, used
        case maxInstances = "max_instances"
        case blockedBy = "blocked_by"
    }

    package init(type: VGPUTypeInfo, free: Int, used: Int, maxInstances: Int?, blockedBy: String?) {
        self.type = type
        self.free = free
        self.used = used
        self.maxInstances = maxInstances
        self.blockedBy = blockedBy
    }

    // The type's fields sit beside free/used in one JSON object.
    package init(from decoder: any Decoder) throws {
        type = try VGPUTypeInfo(from: decoder)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        free = try container.decode(Int.self, forKey: .free)
        used = try container.decode(Int.self, forKey: .used)
        maxInstances = try container.decodeIfPresent(Int.self, forKey: .maxInstances)
        blockedBy = try container.decodeIfPresent(String.self, forKey: .blockedBy)
    }

    package func encode(to encoder: any Encoder) throws {
        try type.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(free, forKey: .free)
        try container.encode(used, forKey: .used)
        try container.encodeIfPresent(maxInstances, forKey: .maxInstances)
        try container.encodeIfPresent(blockedBy, forKey: .blockedBy)
    }
}

/// One physical GPU and the vGPUs it offers and carries; or, for mediated devices of other
/// kinds, one mdev parent and its devices (`isNVIDIA` tells them apart).
package struct PhysicalGPU: Sendable, Hashable, Codable {
    /// The physical function; for a VF whose PF is not visible, the VF itself; the parent's
    /// name for an mdev parent that is not a PCI device.
    package var address: DeviceAddress
    /// False when the GPU is only known through a VF whose `physfn` link is missing.
    package var physicalFunctionVisible: Bool
    package var pci: PCIIdentity?
    package var board: GPUBoard?
    package var interface: VGPUInterface
    /// True when vGPUs live on SR-IOV VFs of this GPU.
    package var sriov: Bool
    package var functions: [VGPUFunction]
    package var vgpuTypes: [VGPUTypeCapacity]
    package var vgpus: [ExistingVGPU]

    enum CodingKeys: String, CodingKey {
        case address
        case physicalFunctionVisible = "physical_function_visible"
        case pci, board, interface, sriov, functions
        case vgpuTypes = "vgpu_types"
        case vgpus
    }

    /// The capacity entry of type `id`.
    package func capacity(ofType id: String) -> VGPUTypeCapacity? {
        vgpuTypes.first { $0.type.id == id }
    }

    /// True for an NVIDIA GPU: PCI vendor 10de, a board the table knows, NVIDIA's
    /// vendor-specific VFs, or NVIDIA's `nvidia-NNN` mdev types. The NVIDIA-only rules (board,
    /// host driver version, framebuffer dirty tracking) apply to its vGPUs, and to no other
    /// mediated device (mtty's virtual parent, another vendor's PCI device).
    package var isNVIDIA: Bool {
        Self.isNVIDIA(pci: pci, board: board, interface: interface, typeIDs: vgpuTypes.map(\.type.id))
    }

    /// The test behind ``isNVIDIA``, for what a source of host facts saw before the GPU is built.
    package static func isNVIDIA(
        pci: PCIIdentity?, board: GPUBoard?, interface: VGPUInterface, typeIDs: some Sequence<String>
    ) -> Bool {
        interface == .vendorVFIO || board != nil || pci?.vendor == PCIIdentity.nvidiaVendorID
            || typeIDs.contains { $0.hasPrefix("nvidia-") }
    }
}

/// Where a host inventory was read from.
package struct InventorySource: Sendable, Hashable, Codable {
    package enum Kind: String, Sendable, Hashable, Codable {
        case sysfs, libvirt
    }
    package var kind: Kind
    /// The sysfs root directory or the libvirt URI.
    package var location: String

    package init(kind: Kind, location: String) {
        self.kind = kind
        self.location = location
    }
}

/// Everything known about a host's vGPUs: GPUs, types and capacity, existing vGPUs, driver
/// and kernel. The JSON form is `vgpu-migrate inspect --json` (see docs/inspect-and-check.md).
package struct HostInventory: Sendable, Hashable, Codable {
    /// Version of the JSON shape.
    package var schemaVersion: Int = 1
    package var source: InventorySource
    package var hostname: String?
    package var kernelRelease: String?
    package var nvidiaDriverVersion: String?
    /// libvirt library version (`9.0.0`), when read through libvirt.
    package var libvirtVersion: String?
    /// Hypervisor (QEMU) version (`7.2.0`), when read through libvirt.
    package var hypervisorVersion: String?
    /// The host UUID libvirt reports (`<host><uuid>` of the capabilities).
    package var hostUUID: String?
    /// Memory of the host and how much a new guest can have (free + buffers + page cache), in
    /// bytes, when read through libvirt.
    package var totalMemoryBytes: UInt64?
    package var freeMemoryBytes: UInt64?
    /// Host CPU model and architecture from libvirt's capabilities.
    package var cpuModel: String?
    package var cpuArchitecture: String?
    package var gpus: [PhysicalGPU]
    package var diagnostics: [Diagnostic]

    package init(
        source: InventorySource, hostname: String? = nil, kernelRelease: String? = nil,
        nvidiaDriverVersion: String? = nil, libvirtVersion: String? = nil, hypervisorVersion: String? = nil,
        gpus: [PhysicalGPU], diagnostics: [Diagnostic] = []
    ) {
        self.source = source
        self.hostname = hostname
        self.kernelRelease = kernelRelease
        self.nvidiaDriverVersion = nvidiaDriverVersion
        self.libvirtVersion = libvirtVersion
        self.hypervisorVersion = hypervisorVersion
        self.gpus = gpus
        self.diagnostics = diagnostics
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case source, hostname
        case kernelRelease = "kernel_release"
        case nvidiaDriverVersion = "nvidia_driver_version"
        case libvirtVersion = "libvirt_version"
        case hypervisorVersion = "hypervisor_version"
        case hostUUID = "host_uuid"
        case totalMemoryBytes = "total_memory_bytes"
        case freeMemoryBytes = "free_memory_bytes"
        case cpuModel = "cpu_model"
        case cpuArchitecture = "cpu_architecture"
        case gpus, diagnostics
    }

    /// The GPU with PF address `address`, or the GPU that owns function `address`.
    package func gpu(containing address: DeviceAddress) -> PhysicalGPU? {
        gpus.first { $0.address == address || $0.functions.contains { $0.address == address } }
    }

    /// All vGPUs on the host.
    package var vgpus: [ExistingVGPU] { gpus.flatMap(\.vgpus) }

    /// Whether an NVIDIA host driver belongs on a host with `gpus`: one is an NVIDIA GPU, or none
    /// was found (a host whose mediated devices are all of other kinds has no NVIDIA driver).
    package static func expectsNVIDIADriver(_ gpus: [PhysicalGPU]) -> Bool {
        gpus.isEmpty || gpus.contains(where: \.isNVIDIA)
    }
}
