import VGPUAgent

@main
struct Entrypoint {
    static func main() async {
        await VGPUAgentCommand.runAndExit()
    }
}
