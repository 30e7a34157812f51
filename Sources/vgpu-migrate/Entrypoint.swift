import VGPUMigrationCLI

@main
struct Entrypoint {
    static func main() async {
        await VGPUMigrateCommand.runAndExit()
    }
}
