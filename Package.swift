// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "vgpu-migrate",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vgpu-migrate", targets: ["vgpu-migrate"]),
        .executable(name: "vgpu-agent", targets: ["vgpu-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // Pure core: host and guest models, parsers, rules. No C, no I/O.
        .target(name: "VGPUMigrationCore"),

        // Policy files (YAML the operator edits) into core values.
        .target(
            name: "VGPUPolicies",
            dependencies: ["VGPUMigrationCore", .product(name: "Yams", package: "Yams")]
        ),

        // Reads a host's vGPU facts from sysfs (mdev bus and NVIDIA vendor-specific VFs).
        .target(name: "VGPUHost", dependencies: ["VGPUMigrationCore"]),

        // Opens a shared library at run time and looks up the functions a C target forwards to.
        .target(name: "CRuntimeLibrary"),

        // libvirt's API, opened at run time (libvirt.so.0) by the first command that needs it;
        // building needs its headers (Debian: libvirt-dev). Only VGPUMigrationLibvirt imports it.
        .target(name: "CLibvirt", dependencies: ["CRuntimeLibrary"]),
        .target(name: "VGPUMigrationLibvirt", dependencies: ["CLibvirt", "VGPUMigrationCore"]),

        // The per-host agent: reservations over the sysfs allocator, served over HTTPS.
        .target(
            name: "VGPUAgent",
            dependencies: [
                "VGPUMigrationCore", "VGPUHost", "VGPUPolicies", "VGPUCommandSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // libcurl's API, opened at run time (libcurl.so.4) by the first call to an agent; building
        // needs its headers (Debian: libcurl4-openssl-dev). Only VGPUAgentClient imports it.
        .target(name: "CCurl", dependencies: ["CRuntimeLibrary"]),
        .target(name: "VGPUAgentClient", dependencies: ["CCurl", "VGPUMigrationCore"]),

        // Migration history: SQLite (GRDB) and PostgreSQL (postgres-nio) behind HistoryStore, and
        // the local journal that keeps records while the store cannot be written.
        .target(
            name: "VGPUMigrationStorage",
            dependencies: [
                "VGPUMigrationCore", "VGPUHost",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),

        // The engine that moves a VM: the migration run, its monitor, reconcile, the source-vGPU
        // release. Speaks only to the core's boundaries; a service can embed it as the CLI does.
        .target(
            name: "VGPUMigrationEngine",
            dependencies: ["VGPUMigrationCore", .product(name: "Logging", package: "swift-log")]
        ),

        // What both command-line tools share: exit codes, the runner, the policy directory.
        .target(
            name: "VGPUCommandSupport",
            dependencies: [
                "VGPUMigrationCore", "VGPUPolicies",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Commands; the executables only call into this.
        .target(
            name: "VGPUMigrationCLI",
            dependencies: [
                "VGPUMigrationCore", "VGPUHost", "VGPUPolicies", "VGPUMigrationLibvirt", "VGPUCommandSupport",
                "VGPUAgentClient", "VGPUMigrationStorage", "VGPUMigrationEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "vgpu-migrate", dependencies: ["VGPUMigrationCLI"]),
        .executableTarget(name: "vgpu-agent", dependencies: ["VGPUAgent"]),

        // Fuzz targets for every reader of outside input; scripts/fuzz builds `vgpu-fuzz` for
        // libFuzzer (-DVGPU_FUZZING), a plain build replays inputs through a target.
        .target(name: "VGPUFuzzTargets", dependencies: ["VGPUMigrationCore", "VGPUHost", "VGPUPolicies"]),
        .executableTarget(name: "vgpu-fuzz", dependencies: ["VGPUFuzzTargets", "VGPUMigrationCore"]),

        // Benchmarks (not tests): bench/history-bench fills a history and times `history` queries.
        .executableTarget(
            name: "history-bench",
            dependencies: ["VGPUMigrationCore", "VGPUMigrationStorage", .product(name: "GRDB", package: "GRDB.swift")],
            path: "bench/history-bench"
        ),
        // bench/drain-bench plans a drain of 10,000 VMs over a fleet of 1,000 hosts.
        .executableTarget(
            name: "drain-bench", dependencies: ["VGPUMigrationCore", "VGPUHost", "VGPUPolicies"],
            path: "bench/drain-bench"
        ),

        // Paths to Fixtures/ and the shared real-world data, for the test targets only, processes
        // and labs,
        // and the in-memory stand-ins of the engine's boundaries (hypervisors, agents, history,
        // journal, a virtual clock) that follow the real components' semantics.
        .target(
            name: "VGPUTestSupport", dependencies: ["VGPUMigrationCore", "VGPUMigrationEngine", "VGPUHost"]),

        .testTarget(
            name: "VGPUMigrationCoreTests",
            dependencies: ["VGPUMigrationCore", "VGPUHost", "VGPUPolicies", "VGPUTestSupport"]
        ),
        .testTarget(name: "VGPUPoliciesTests", dependencies: ["VGPUPolicies", "VGPUTestSupport"]),
        .testTarget(name: "VGPUHostTests", dependencies: ["VGPUHost", "VGPUPolicies", "VGPUTestSupport"]),
        .testTarget(
            name: "VGPUMigrationLibvirtTests",
            dependencies: ["VGPUMigrationLibvirt", "VGPUPolicies", "VGPUTestSupport"]
        ),
        .testTarget(
            name: "VGPUMigrationEngineTests",
            dependencies: ["VGPUMigrationEngine", "VGPUMigrationCore", "VGPUHost", "VGPUPolicies", "VGPUTestSupport"]
        ),
        .testTarget(
            name: "VGPUMigrationCLITests",
            dependencies: ["VGPUMigrationCLI", "VGPUMigrationEngine", "VGPUMigrationStorage", "VGPUTestSupport"]
        ),
        .testTarget(
            name: "VGPUMigrationStorageTests",
            dependencies: ["VGPUMigrationStorage", "VGPUTestSupport", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "VGPUFuzzTargetsTests",
            dependencies: ["VGPUFuzzTargets", "VGPUHost", "VGPUPolicies", "VGPUTestSupport"],
            exclude: ["Regressions"]
        ),
        .testTarget(
            name: "VGPUAgentTests",
            dependencies: [
                "VGPUAgent", "VGPUAgentClient", "VGPUHost", "VGPUPolicies", "VGPUTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
