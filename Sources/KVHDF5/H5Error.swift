// Typed errors of KVHDF5. Pure Swift: the HDF5 C calls live in HDF5.swift, H5File, H5Object, H5Group and H5Dataset.swift.
import Foundation

/// An error from KVHDF5. Every case names the file it concerns and, where there is one, the
/// object (group, dataset or attribute) path inside the file, e.g. `/runs/r1/keys` or
/// `/runs/r1@model` for the attribute `model` of the group `/runs/r1`.
public enum H5Error: LocalizedError, Equatable, Sendable {
    /// No file exists at the path.
    case fileNotFound(file: String)
    /// The file exists but has no HDF5 signature (not an HDF5 file).
    case notHDF5(file: String)
    /// An HDF5 C call failed (negative return code). `detail` is the message of HDF5's error
    /// stack, outermost first (e.g. "unable to open file → truncated file: eof = …").
    case libraryCall(function: String, file: String, object: String, detail: String)
    /// The named group, dataset or attribute does not exist.
    case notFound(file: String, object: String)
    /// A group or dataset with that name already exists (datasets are never overwritten silently;
    /// remove the old one first).
    case alreadyExists(file: String, object: String)
    /// The object exists but is of another kind or element type than requested
    /// (e.g. a dataset where a group was expected, or strings read as numbers).
    case typeMismatch(file: String, object: String, expected: String, found: String)
    /// The product of a shape does not equal the number of values given.
    case shapeMismatch(file: String, object: String, shape: [Int], count: Int)
    /// An argument is invalid (empty name, negative dimension, string with a NUL, gzip level…).
    case invalidArgument(file: String, object: String, reason: String)
    /// A modification was attempted on a file opened read-only.
    case readOnly(file: String, object: String)
    /// The file (and thereby every group and dataset of it) has been closed.
    case fileClosed(file: String)
    /// A file-system step of `H5File.writeAtomically` (create, fsync, rename) failed.
    case fileSystem(file: String, operation: String, reason: String)
    /// The file carries KVLab's integrity stamp and does not match it (truncated, or bytes changed
    /// since it was written): refused before HDF5 parses it.
    case damaged(file: String, reason: String)
    /// The file carries no KVLab integrity stamp (another program's, or an older KVLab's) where one
    /// is required (a results file resumed, merged or compared): KVLAB_IGNORE_CHECKSUM=1 lifts it.
    case unstamped(file: String)

    /// The path of the HDF5 file the error concerns.
    public var filePath: String {
        switch self {
        case .fileNotFound(let f), .notHDF5(let f), .fileClosed(let f), .damaged(let f, _), .unstamped(let f): return f
        case .libraryCall(_, let f, _, _), .notFound(let f, _), .alreadyExists(let f, _),
             .typeMismatch(let f, _, _, _), .shapeMismatch(let f, _, _, _),
             .invalidArgument(let f, _, _), .readOnly(let f, _), .fileSystem(let f, _, _):
            return f
        }
    }

    /// The object path inside the file, where the error concerns one.
    public var objectPath: String? {
        switch self {
        case .fileNotFound, .notHDF5, .fileClosed, .fileSystem, .damaged, .unstamped: return nil
        case .libraryCall(_, _, let o, _), .notFound(_, let o), .alreadyExists(_, let o),
             .typeMismatch(_, let o, _, _), .shapeMismatch(_, let o, _, _),
             .invalidArgument(_, let o, _), .readOnly(_, let o):
            return o
        }
    }

    public var errorDescription: String? {
        switch self {
        case .fileNotFound(let f):
            return "HDF5 file '\(f)' does not exist"
        case .notHDF5(let f):
            return "'\(f)' is not an HDF5 file (no HDF5 signature)"
        case let .libraryCall(function, f, o, detail):
            let tail = detail.isEmpty ? "" : ": \(detail)"
            return "HDF5 call \(function) failed on '\(f)' at \(o)\(tail)"
        case let .notFound(f, o):
            return "'\(f)': \(o) does not exist"
        case let .alreadyExists(f, o):
            return "'\(f)': \(o) already exists"
        case let .typeMismatch(f, o, expected, found):
            return "'\(f)': \(o) is \(found), expected \(expected)"
        case let .shapeMismatch(f, o, shape, count):
            return "'\(f)': \(o): shape \(shape) holds \(shapeElementCount(shape).map(String.init) ?? "an invalid number of") values but \(count) were given"
        case let .invalidArgument(f, o, reason):
            return "'\(f)': \(o): \(reason)"
        case let .readOnly(f, o):
            return "'\(f)' is open read-only: cannot modify \(o)"
        case .fileClosed(let f):
            return "HDF5 file '\(f)' is closed"
        case let .fileSystem(f, operation, reason):
            return "writing '\(f)' failed at \(operation): \(reason)"
        case let .unstamped(f):
            return "'\(f)' carries no KVLab integrity stamp (written by another program, by a KVLab older than the stamp, " +
                "or its header was overwritten); a results file that is resumed, merged or compared must carry one, since " +
                "damage could not be told from results. If you trust it, set \(H5Integrity.ignoreEnvironment)=1 " +
                "(`\(H5Integrity.ignoreEnvironment)=1 kvlab merge new.h5 '\(f)'` writes a stamped copy)"
        case let .damaged(f, reason):
            return "'\(f)' is damaged: \(reason); refusing to read it (set \(H5Integrity.ignoreEnvironment)=1 to read a file you changed on purpose)"
        }
    }
}
