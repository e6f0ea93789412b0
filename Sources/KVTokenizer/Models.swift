import Foundation

/// The vocabulary part shared by the models: token <-> id, compared byte-wise.
struct Vocabulary {
    var idOf: [TokenKey: Int] = [:]
    var tokenOf: [Int: String] = [:]
    /// Single-scalar tokens, for the BPE initial split without string hashing.
    var scalarId: [UInt32: Int32] = [:]

    init(_ node: JSONNode) throws {
        let entries = try node.entries()
        idOf.reserveCapacity(entries.count)
        for (token, idNode) in entries {
            let id = try idNode.int()
            guard id >= 0, id <= Int(Int32.max) else { throw idNode.invalid("id \(id) out of range") }
            idOf[TokenKey(token)] = id
        }
        buildReverse()
    }

    /// A vocabulary whose ids are the list positions (a GGUF `tokenizer.ggml.tokens` array).
    /// A later duplicate of a token wins, as in a Python dict built from the list.
    init(tokens: [String]) {
        idOf.reserveCapacity(tokens.count)
        for (id, token) in tokens.enumerated() { idOf[TokenKey(token)] = id }
        buildReverse()
    }

    private mutating func buildReverse() {
        tokenOf.reserveCapacity(idOf.count)
        // A later duplicate of a token wins (serde map semantics); build the reverse from it.
        for (key, id) in idOf {
            tokenOf[id] = key.string
            let scalars = key.string.unicodeScalars
            if scalars.count == 1, let s = scalars.first { scalarId[s.value] = Int32(id) }
        }
    }

    var maxId: Int { tokenOf.keys.max() ?? -1 }

    @inline(__always) func id(_ token: String) -> Int? { idOf[TokenKey(token)] }
}

protocol TokenModel: AnyObject {
    var vocab: Vocabulary { get }
    func tokenize(_ piece: String, into ids: inout [Int])
}

/// `WordLevel`: a whole piece is one token, or the unknown token.
final class WordLevelModel: TokenModel {
    let vocab: Vocabulary
    let unkId: Int?

    init(_ node: JSONNode) throws {
        vocab = try Vocabulary(node.require("vocab"))
        let unk = try node.optionalString("unk_token") ?? "<unk>"
        unkId = vocab.id(unk)
    }

    func tokenize(_ piece: String, into ids: inout [Int]) {
        if let id = vocab.id(piece) {
            ids.append(id)
        } else if let unk = unkId {
            ids.append(unk)
        }
        // `tokenizers` fails with "WordLevel error: Missing [UNK] token from the vocabulary"
        // here; encode() does not throw, so such a piece is dropped.
    }
}

/// Byte-pair encoding, as `tokenizers::models::bpe::BPE` (without dropout).
final class BPEModel: TokenModel, @unchecked Sendable {
    let vocab: Vocabulary
    /// (left id << 32 | right id) -> (rank << 32 | merged id)
    private let merges: [UInt64: UInt64]
    private let unkId: Int?
    private let fuseUnk: Bool
    private let byteFallback: Bool
    private let ignoreMerges: Bool
    private let prefix: String?
    private let suffix: String?
    /// "<0x00>".."<0xFF>" ids (byte fallback).
    private let byteIds: [Int32?]

    private var cache: [TokenKey: [Int32]] = [:]
    private let cacheLock = NSLock()
    private static let cacheCapacity = 100_000

    /// The options of a BPE model besides its vocabulary and merges.
    struct Options {
        var unkToken: String? = nil
        var fuseUnk = false
        var byteFallback = false
        var ignoreMerges = false
        var continuingSubwordPrefix: String? = nil
        var endOfWordSuffix: String? = nil
    }

    /// A model from a vocabulary and merges in rank order. `fail(i, reason)` makes the error for
    /// merge `i` (a token that is not in the vocabulary), located in the caller's file.
    init(vocab: Vocabulary, merges pairs: [(String, String)], options: Options,
         fail: (Int, String) -> Error) throws {
        self.vocab = vocab
        // Like `tokenizers`, a missing unk token only matters when it is needed; it is then
        // skipped instead of failing the whole encode.
        unkId = options.unkToken.flatMap { vocab.id($0) }
        fuseUnk = options.fuseUnk
        byteFallback = options.byteFallback
        ignoreMerges = options.ignoreMerges
        prefix = options.continuingSubwordPrefix
        suffix = options.endOfWordSuffix
        // BPE dropout is not modelled: encoding is deterministic (BPE-dropout is a training-time
        // regularizer; released tokenizers set it to null).

        var byteIds = [Int32?](repeating: nil, count: 256)
        for b in 0..<256 {
            if let id = vocab.id(String(format: "<0x%02X>", b)) { byteIds[b] = Int32(id) }
        }
        self.byteIds = byteIds

        var merges: [UInt64: UInt64] = [:]
        merges.reserveCapacity(pairs.count)
        let prefixLength = prefix?.utf8.count ?? 0
        for (rank, (a, b)) in pairs.enumerated() {
            guard let aId = vocab.id(a) else { throw fail(rank, "token \(a.debugDescription) is not in the vocabulary") }
            guard let bId = vocab.id(b) else { throw fail(rank, "token \(b.debugDescription) is not in the vocabulary") }
            let bBytes = Array(b.utf8)
            let mergedBytes = Array(a.utf8) + bBytes[min(prefixLength, bBytes.count)...]
            let merged = String(decoding: mergedBytes, as: UTF8.self)
            guard let newId = vocab.id(merged) else {
                throw fail(rank, "merged token \(merged.debugDescription) is not in the vocabulary")
            }
            // A later duplicate of a pair overwrites the earlier one, as in `tokenizers`' merge map.
            merges[UInt64(aId) << 32 | UInt64(bId)] = UInt64(rank) << 32 | UInt64(newId)
        }
        self.merges = merges
    }

    /// A `tokenizer.json` "model" of type BPE.
    convenience init(_ node: JSONNode) throws {
        let vocab = try Vocabulary(node.require("vocab"))
        var options = Options()
        options.unkToken = try node.optionalString("unk_token")
        options.fuseUnk = try node.optionalBool("fuse_unk") ?? false
        options.byteFallback = try node.optionalBool("byte_fallback") ?? false
        options.ignoreMerges = try node.optionalBool("ignore_merges") ?? false
        options.continuingSubwordPrefix = try node.optionalString("continuing_subword_prefix")
        options.endOfWordSuffix = try node.optionalString("end_of_word_suffix")

        let items = try node.require("merges").array()
        var pairs: [(String, String)] = []
        var nodes: [JSONNode] = []
        pairs.reserveCapacity(items.count)
        nodes.reserveCapacity(items.count)
        for item in items {
            switch item.value {
            case .string(let line):
                if line.bytesHavePrefix("#version") { continue }
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw item.invalid("expected \"left right\" (two tokens separated by one space), found \(line.debugDescription)")
                }
                pairs.append((String(parts[0]), String(parts[1])))
            case .array(let pair):
                guard pair.count == 2, case .string(let x) = pair[0], case .string(let y) = pair[1] else {
                    throw item.invalid("expected a pair of token strings")
                }
                pairs.append((x, y))
            default:
                throw item.invalid("expected a \"left right\" string or a [left, right] pair, found \(item.value.typeName)")
            }
            nodes.append(item)
        }
        try self.init(vocab: vocab, merges: pairs, options: options) { i, reason in
            nodes[i].invalid(reason.replacingOccurrences(of: "the vocabulary", with: "model.vocab"))
        }
    }

    func tokenize(_ piece: String, into ids: inout [Int]) {
        guard !piece.isEmpty else { return }
        if ignoreMerges, let id = vocab.id(piece) {
            ids.append(id)
            return
        }
        let key = TokenKey(piece)
        cacheLock.lock()
        let hit = cache[key]
        cacheLock.unlock()
        if let hit = hit {
            for id in hit { ids.append(Int(id)) }
            return
        }
        let word = mergeWord(piece)
        cacheLock.lock()
        if cache.count >= Self.cacheCapacity { cache.removeAll(keepingCapacity: true) }
        cache[key] = word
        cacheLock.unlock()
        for id in word { ids.append(Int(id)) }
    }

    /// `BPE::merge_word`: initial symbols (with byte fallback / unk), then all merges.
    private func mergeWord(_ w: String) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(w.utf8.count)
        var unk: Int32? = nil
        let scalars = Array(w.unicodeScalars)
        let plain = prefix == nil && suffix == nil
        for (i, scalar) in scalars.enumerated() {
            var id: Int32?
            var s: String? = nil
            if plain {
                id = vocab.scalarId[scalar.value]
            } else {
                var t = String(scalar)
                if i > 0, let p = prefix { t = p + t }
                if i == scalars.count - 1, let x = suffix { t += x }
                s = t
                id = vocab.id(t).map(Int32.init)
            }
            if let id = id {
                if let u = unk {
                    symbols.append(u)
                    unk = nil
                }
                symbols.append(id)
                continue
            }
            if byteFallback {
                let bytes = s.map { Array($0.utf8) } ?? Array(String(scalar).utf8)
                var fallback: [Int32] = []
                for b in bytes {
                    guard let bid = byteIds[Int(b)] else { break }
                    fallback.append(bid)
                }
                if fallback.count == bytes.count {
                    symbols.append(contentsOf: fallback)
                    continue
                }
            }
            if let unkId = unkId {
                if let u = unk, fuseUnk {
                    unk = u
                } else {
                    if let u = unk { symbols.append(u) }
                    unk = Int32(unkId)
                }
            }
        }
        if let u = unk { symbols.append(u) }
        mergeAll(&symbols)
        return symbols
    }

    @inline(__always) private func merge(_ a: Int32, _ b: Int32) -> UInt64? {
        merges[UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))]
    }

    /// `Word::merge_all`: repeatedly apply the lowest-rank merge (leftmost on ties).
    private func mergeAll(_ symbols: inout [Int32]) {
        let n = symbols.count
        guard n >= 2 else { return }
        var next = [Int32](repeating: -1, count: n)
        var prev = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n {
            next[i] = i + 1 < n ? Int32(i + 1) : -1
            prev[i] = Int32(i - 1)
        }
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merge(symbols[i], symbols[i + 1]) {
                heap.push(rank: UInt32(m >> 32), pos: Int32(i), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF))
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let np = Int(next[pos])
            guard let m = merge(symbols[pos], symbols[np]),
                  Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == top.newId else { continue }
            symbols[pos] = top.newId
            alive[np] = false
            next[pos] = next[np]
            if next[np] >= 0 { prev[Int(next[np])] = Int32(pos) }
            if prev[pos] >= 0 {
                let pp = Int(prev[pos])
                if let m2 = merge(symbols[pp], symbols[pos]) {
                    heap.push(rank: UInt32(m2 >> 32), pos: Int32(pp), newId: Int32(truncatingIfNeeded: m2 & 0xFFFF_FFFF))
                }
            }
            if next[pos] >= 0 {
                if let m2 = merge(symbols[pos], symbols[Int(next[pos])]) {
                    heap.push(rank: UInt32(m2 >> 32), pos: Int32(pos), newId: Int32(truncatingIfNeeded: m2 & 0xFFFF_FFFF))
                }
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        for i in 0..<n where alive[i] { out.append(symbols[i]) }
        symbols = out
    }
}

/// A binary min-heap of pending merges ordered by (rank, position).
private struct MergeHeap {
    struct Entry {
        var rank: UInt32
        var pos: Int32
        var newId: Int32
        @inline(__always) func less(_ o: Entry) -> Bool { rank != o.rank ? rank < o.rank : pos < o.pos }
    }

    private var items: [Entry] = []

    mutating func push(rank: UInt32, pos: Int32, newId: Int32) {
        items.append(Entry(rank: rank, pos: pos, newId: newId))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].less(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            let n = items.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n, items[l].less(items[m]) { m = l }
                if r < n, items[r].less(items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return first
    }
}
