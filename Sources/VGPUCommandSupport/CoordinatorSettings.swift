import Foundation
import VGPUPolicies

/// The coordinator's settings file (``CoordinatorConfigFile``), read once per process.
package enum CoordinatorSettings {
    private static let loaded: Result<CoordinatorConfig?, CommandFailure> = {
        do throws(PolicyFileError) {
            return .success(try CoordinatorConfigFile.load())
        } catch {
            return .failure(
                CommandFailure(
                    error.description,
                    remedy: "fix the file, or point \(CoordinatorConfigFile.environmentVariable) at another one",
                    exitCode: CommandFailure.usageOrConfiguration))
        }
    }()

    /// The settings in force, nil when there is no settings file.
    package static func current() throws(CommandFailure) -> CoordinatorConfig? {
        try loaded.get()
    }
}
