import Foundation
import KVModel

/// Text for commands that tokenize with a model's own tokenizer (probes, calibration).
public enum ModelText {
    /// The model's text codec (its folder's tokenizer.json or its GGUF metadata), nil when it has none.
    public static func codec(for modelSpec: String) throws -> TextCodec? {
        guard let path = try ModelSource.parse(modelSpec).path else { return nil }
        return try TokenizerCodec.load(model: path)
    }

    /// A corpus (`debian:NAME`) or a text file, tokenized by `codec`, with a label naming its source
    /// and the SHA-256 of the text.
    public static func tokens(_ spec: String, codec: TextCodec) throws -> (ids: [Int], label: String, sha256: String) {
        let text = try TextFile.read(spec)
        var h = SHA256()
        h.update(Array(text.utf8))
        let sha = h.finalize()
        return (codec.encode(text), "\(spec) (sha256 \(sha))", sha)
    }
}
