import Foundation
import VGPUFuzzTargets
import VGPUMigrationCore

#if VGPU_FUZZING
    // Built by scripts/fuzz with `--sanitize fuzzer --sanitize address -Xswiftc -DVGPU_FUZZING`:
    // libFuzzer's main drives, the target is VGPU_FUZZ_TARGET.
    let fuzzing: (target: FuzzTarget, catalog: GPUBoardCatalog) = {
        let environment = ProcessInfo.processInfo.environment
        guard let name = environment["VGPU_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
            fatalError("set VGPU_FUZZ_TARGET to one of: \(FuzzTarget.names)")
        }
        do {
            return (target, try FuzzCommand.loadCatalog(environment))
        } catch {
            fatalError("cannot read the board table: \(error)")
        }
    }()

    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        fuzzing.target.run(UnsafeBufferPointer(start: data, count: size), catalog: fuzzing.catalog)
        return 0
    }
#else
    @main
    struct VGPUFuzz {
        static func main() {
            exit(
                FuzzCommand.run(
                    arguments: Array(CommandLine.arguments.dropFirst()),
                    environment: ProcessInfo.processInfo.environment))
        }
    }
#endif
