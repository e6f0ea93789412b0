import Foundation

// Reference: transformers/integrations/gguf/gguf_tokenizer_mapping.py (GGUF_PRE_TOKENIZER_SPLITS,
// get_merges) and tokenization_utils_base.py (generate_merges), transformers 5.x.

/// The split regex transformers puts before a regex-free ByteLevel pre-tokenizer for a GGUF
/// `tokenizer.ggml.pre` value. Every other value (gpt-2, smollm, default, starcoder, ...) keeps
/// GPT-2's ByteLevel regex: transformers does not reproduce llama.cpp's own regex for those
/// (e.g. llama.cpp splits every digit for "smollm", transformers does not).
enum GGUFPreTokenizer {
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen35 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let gpt4o = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    static let splits: [String: String] = {
        var m: [String: String] = [:]
        for k in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                  "jina-v5-nano", "dbrx", "smaug-bpe"] { m[k] = llama3 }
        m["tekken"] = tekken
        for k in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] { m[k] = qwen2 }
        m["qwen35"] = qwen35
        for k in ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"] { m[k] = gpt4o }
        return m
    }()

    /// The split regex for a `tokenizer.ggml.pre` value, nil for GPT-2's ByteLevel default.
    static func splitPattern(_ pre: String) -> String? { splits[pre] }
}

/// Merges for a BPE vocabulary that lists none (SentencePiece GGUFs), as transformers'
/// `generate_merges(vocab, vocab_scores)`: every split of every token into two vocabulary
/// tokens is a merge with that token's score; merges are ordered by score, then by the lengths
/// of the left and the right part (in code points), all descending, ties in vocabulary order
/// (per token, its splits are ordered by the ids of their parts).
enum SentencePieceMerges {
    static func derive(tokens: [String], scores: [Double]) -> [(String, String)] {
        // Python's dict(zip(tokens, scores)) and {token: index}: first position, last value.
        var index: [TokenKey: Int] = [:]
        var score: [TokenKey: Double] = [:]
        var order: [String] = []
        index.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() {
            let key = TokenKey(t)
            if index[key] == nil { order.append(t) }
            index[key] = i
        }
        for (t, s) in zip(tokens, scores) { score[TokenKey(t)] = s }
        struct Merge { var left: String; var right: String; var score: Double; var leftLength: Int; var rightLength: Int }
        var merges: [Merge] = []
        for t in order {
            guard let s = score[TokenKey(t)] else { continue }   // zip stopped before this token
            let scalars = Array(t.unicodeScalars)
            var local: [(Merge, Int, Int)] = []
            for cut in 1..<max(scalars.count, 1) {
                let l = String(String.UnicodeScalarView(scalars[..<cut]))
                let r = String(String.UnicodeScalarView(scalars[cut...]))
                guard let li = index[TokenKey(l)], let ri = index[TokenKey(r)] else { continue }
                local.append((Merge(left: l, right: r, score: s, leftLength: cut, rightLength: scalars.count - cut), li, ri))
            }
            // sorted(local, key=(vocab[l], vocab[r])): stable.
            local = local.enumerated().sorted { a, b in
                (a.element.1, a.element.2, a.offset) < (b.element.1, b.element.2, b.offset)
            }.map(\.element)
            merges.append(contentsOf: local.map(\.0))
        }
        // sorted(merges, key=(score, len(l), len(r)), reverse=True): stable, so ties keep their order.
        let ranked = merges.indices.sorted { a, b in
            let x = merges[a], y = merges[b]
            if x.score != y.score { return x.score > y.score }
            if x.leftLength != y.leftLength { return x.leftLength > y.leftLength }
            if x.rightLength != y.rightLength { return x.rightLength > y.rightLength }
            return a < b
        }
        return ranked.map { (merges[$0].left, merges[$0].right) }
    }
}
