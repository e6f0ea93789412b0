import Foundation

extension Tokenizer {
    /// Whether `path` is a GGUF file (a regular file that starts with the magic "GGUF").
    public static func isGGUF(path: String) -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// The tokenizer of a model path, whatever form the model has:
    ///  - a GGUF file: the tokenizer its metadata describes (`init(gguf:)`);
    ///  - a checkpoint folder: its tokenizer.json (with tokenizer_config.json), or nil when the
    ///    folder has none;
    ///  - a tokenizer.json file itself.
    /// A path that does not exist is a `TokenizerError.fileNotFound`.
    public static func forModel(path: String) throws -> Tokenizer? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TokenizerError.fileNotFound(path: path)
        }
        if isDirectory.boolValue {
            let json = (path as NSString).appendingPathComponent("tokenizer.json")
            return FileManager.default.fileExists(atPath: json) ? try Tokenizer(path: json) : nil
        }
        return isGGUF(path: path) ? try Tokenizer(gguf: path) : try Tokenizer(path: path)
    }
}
