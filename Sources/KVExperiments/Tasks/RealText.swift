import Foundation

/// Real English text from Debian packages, for haystacks, perplexity and calibration. A config or
/// command names one as `debian:NAME` wherever it takes a text file (`text_file: debian:licenses`).
///
/// - `debian:licenses`: the license texts of base-files (/usr/share/common-licenses), present on every
///   Debian system: GPL-3, Apache-2.0, LGPL-2.1, MPL-2.0, GFDL-1.3, GPL-2, MPL-1.1, Artistic, CC0-1.0,
///   joined by blank lines in that order (~26K words).
/// - `debian:kjv`: the King James Bible (bible-kjv-text 4.38, public domain), ~820K words: book-length
///   text for perplexity in the spirit of PG19. Extracted once at setup by `scripts/fetch_text.sh`
///   (the package stores it compressed) into data/text/kjv.txt; `KVLAB_TEXT_DIR` overrides the folder.
///
/// Results record the corpus name, its files and the SHA-256 of the text, so a figure can be tied to
/// the exact bytes it was computed on.
public enum RealText {
    public struct Corpus: Sendable {
        public var name: String            // "debian:licenses"
        public var package: String         // the Debian package that ships it
        public var files: [String]
        public var text: String
        public var sha256: String          // of the UTF-8 text as used
    }

    public static let prefix = "debian:"
    public static let names = ["licenses", "kjv"]
    static let licenseFiles = ["GPL-3", "Apache-2.0", "LGPL-2.1", "MPL-2.0", "GFDL-1.3", "GPL-2", "MPL-1.1", "Artistic", "CC0-1.0"]
    static let licenseDir = "/usr/share/common-licenses"

    /// Whether a text-file argument names a Debian corpus rather than a path.
    public static func isCorpus(_ spec: String) -> Bool { spec.hasPrefix(prefix) }

    /// The folder `scripts/fetch_text.sh` extracts into.
    public static var textDirectory: String {
        ProcessInfo.processInfo.environment["KVLAB_TEXT_DIR"] ?? "data/text"
    }

    /// Loads a corpus by its `debian:NAME` spec; the error says how to get a missing one.
    public static func load(_ spec: String) throws -> Corpus {
        guard isCorpus(spec) else { throw RealTextError(spec: spec, message: "expected debian:NAME with NAME one of \(names.joined(separator: ", "))") }
        let name = String(spec.dropFirst(prefix.count))
        let files: [String], package: String
        switch name {
        case "licenses":
            files = licenseFiles.map { "\(licenseDir)/\($0)" }
            package = "base-files"
        case "kjv":
            files = ["\(textDirectory)/kjv.txt"]
            package = "bible-kjv-text 4.38 (extracted with bible-kjv by scripts/fetch_text.sh)"
        default:
            throw RealTextError(spec: spec, message: "unknown corpus '\(name)'; known: \(names.map { prefix + $0 }.joined(separator: ", "))")
        }
        var parts: [String] = []
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else {
                let hint = name == "kjv" ? " (run `bash scripts/fetch_text.sh`, or `bash scripts/setup.sh --text`)" : " (Debian's base-files package provides it)"
                throw RealTextError(spec: spec, message: "\(f) not found\(hint)")
            }
            guard let s = String(data: data, encoding: .utf8) else { throw RealTextError(spec: spec, message: "\(f) is not UTF-8 text") }
            parts.append(s.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let text = parts.joined(separator: "\n\n")
        var h = SHA256()
        h.update(Array(text.utf8))
        return Corpus(name: spec, package: package, files: files, text: text, sha256: h.finalize())
    }
}

public struct RealTextError: LocalizedError, Equatable {
    public var spec: String
    public var message: String
    public var errorDescription: String? { "\(spec): \(message)" }
}
