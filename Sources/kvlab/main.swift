import ArgumentParser
import KVExperiments

/// `kvlab`: the KVLab command line.
struct KVLabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvlab",
        abstract: "KV-cache compression research harness: how much KV memory and traffic a policy saves, and what it costs.",
        discussion: """
        Models are Hugging Face checkpoint folders (config.json + safetensors), GGUF files (.gguf) or seeded synthetic \
        shapes written as synthetic:PRESET[,key=value...] (presets: \(ModelSourceHelp.presets)).
        """,
        version: KVLabInfo.version,
        subcommands: [RunCommand.self, ValidateCommand.self, PoliciesCommand.self, ReportCommand.self, CompareCommand.self, MergeCommand.self, SlurmCommand.self, StatusCommand.self, InspectCommand.self, GenerateCommand.self, TokenizeCommand.self, BenchCommand.self, CalibrateCommand.self, ProbeCommand.self])
}

KVLabCommand.main()
