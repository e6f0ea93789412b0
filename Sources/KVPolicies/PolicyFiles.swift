// Support file, not a policy: the calibration files policies read (Loki's bases, KVSharer's maps;
// their papers and reference repositories are on their own files), read once per path and date.
import Foundation
import KVHDF5

/// Files a policy reads at build time, remembered per path and modification date: a sweep builds
/// the policy once per sample, the file is read once.
final class PolicyFileCache<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var entries: [String: (Date, T)] = [:]

    /// `read(path)`, or what it returned before for the same file. An error that is not already a
    /// `PolicyError` becomes one naming `policy` and `field`, with the path.
    func load(_ path: String, policy: String, field: String, read: (String) throws -> T) throws -> T {
        let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? Date.distantPast
        lock.lock()
        if let (date, value) = entries[path], date == modified { lock.unlock(); return value }
        lock.unlock()
        let value: T
        do { value = try read(path) } catch let e as PolicyError { throw e } catch {
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "\(path): \(error.localizedDescription)")
        }
        lock.lock(); entries[path] = (modified, value); lock.unlock()
        return value
    }
}

/// A policy's HDF5 file (a calibration), opened, its `format` attribute checked: "not a `what`
/// (attribute format != F); write one with `writer`" otherwise, through `bad`. The caller closes it.
func openPolicyFile(_ path: String, format: String, what: String, writer: String, bad: (String) -> PolicyError) throws -> H5File {
    let f = try H5File.open(path)
    do {
        guard f.root.hasAttribute("format"), try f.root.stringAttribute("format") == format else {
            throw bad("not a \(what) (attribute format != \(format)); write one with `\(writer)`")
        }
    } catch { try? f.close(); throw error }
    return f
}
