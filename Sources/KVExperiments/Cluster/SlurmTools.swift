// Calls to Slurm's command-line tools (sinfo, sbatch), with clear errors where they are missing.
import Foundation

public enum SlurmTools {
    /// The executable `tool` in PATH, if any.
    public static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = (String(dir) as NSString).appendingPathComponent(tool)
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `tool args`; returns its standard output; throws with its standard error on failure.
    public static func run(_ tool: String, _ args: [String]) throws -> String {
        guard let exe = which(tool) else {
            throw ClusterError.toolMissing(tool: tool, hint: "run this on a Slurm login node (Debian: apt-get install slurm-client)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out; p.standardError = err
        try p.run()
        // Read both pipes to the end before waiting (a full pipe would block the tool).
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        let stdout = String(decoding: outData, as: UTF8.self), stderr = String(decoding: errData, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw ClusterError.commandFailed(command: ([tool] + args).joined(separator: " "), status: p.terminationStatus,
                                             output: stderr.isEmpty ? stdout : stderr)
        }
        return stdout
    }

    /// The cluster's partitions (`sinfo -h -o %P`, default marker `*` removed); nil where sinfo is
    /// not installed.
    public static func partitions() throws -> [String]? {
        guard which("sinfo") != nil else { return nil }
        let text = try run("sinfo", ["-h", "-o", "%P"])
        var seen: [String] = []
        for line in text.split(whereSeparator: \.isNewline) {
            let name = line.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "*", with: "")
            if !name.isEmpty && !seen.contains(name) { seen.append(name) }
        }
        return seen
    }

    /// Refuses a partition that is not in `available` (nil: unknown, not checked).
    public static func checkPartition(_ name: String?, available: [String]?) throws {
        guard let name, let available else { return }
        if !available.contains(name) { throw ClusterError.unknownPartition(name: name, available: available) }
    }

    /// Submits the array, then the merge job after it (afterany: it runs even when a task failed,
    /// and its merge names what is missing). Returns both job ids.
    public static func submit(_ job: SlurmJob) throws -> (array: String, merge: String) {
        guard which("sbatch") != nil else {
            throw ClusterError.toolMissing(tool: "sbatch", hint: "the scripts are written; submit them where Slurm is installed with: \(job.submitCommand)")
        }
        let array = try jobID(run("sbatch", ["--parsable", job.arrayScript]))
        let merge = try jobID(run("sbatch", ["--parsable", "--dependency=afterany:\(array)", job.mergeScript]))
        return (array, merge)
    }

    /// The job id in `sbatch --parsable` output ("123" or "123;cluster").
    static func jobID(_ output: String) throws -> String {
        let id = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ";").first.map(String.init) ?? ""
        guard !id.isEmpty, id.allSatisfy(\.isNumber) else {
            throw ClusterError.commandFailed(command: "sbatch --parsable", status: 0, output: "expected a job id, got '\(output)'")
        }
        return id
    }
}
