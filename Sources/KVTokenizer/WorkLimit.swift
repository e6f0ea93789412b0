import Foundation

/// A bound on the work of one regular-expression search (issue 16). tokenizer.json patterns run
/// on ICU, a backtracking engine (as Oniguruma is in `tokenizers`): a pattern such as
/// `(\w+\s?)*$` takes time exponential in the input's length. Asked to report progress, ICU calls
/// back once per start position where no match begins and once per 10,000 backtracking steps; a
/// search may make `baseTicks + ticksPerCharacter x characters` such calls and is stopped beyond
/// that. Measured (200 KB of KJV text, repeated words, spaces, digits, punctuation): GPT-2's and
/// Llama 3's patterns make at most 1.4 calls per 1,000 characters, the Whitespace pre-tokenizer's
/// at most 1,000 (one per space); `(\w+\s?)*$` on 200 letters and a "!" would need about 2^200.
public struct TokenizerWorkLimitError: LocalizedError, Equatable, Sendable {
    /// Where the pattern came from (file and JSON field), or the built-in regex.
    public var origin: String
    public var pattern: String
    /// Length of the input (UTF-16 units) the search gave up on.
    public var inputLength: Int

    public var errorDescription: String? {
        "\(origin): regular expression \(pattern.debugDescription) exceeded its work limit on an input of \(inputLength) characters " +
            "(catastrophic backtracking: the pattern's time grows exponentially with the input); simplify the pattern"
    }
}

public enum TokenizerWorkLimit {
    static let baseTicks = 4096
    static let ticksPerCharacter = 2

    final class Scope: @unchecked Sendable {
        let lock = NSLock()
        var failure: TokenizerWorkLimitError?
        func record(_ e: TokenizerWorkLimitError) { lock.lock(); if failure == nil { failure = e }; lock.unlock() }
        var failed: Bool { lock.lock(); defer { lock.unlock() }; return failure != nil }
    }
    @TaskLocal static var scope: Scope?

    /// Runs `body` with regex searches bounded; throws the first `TokenizerWorkLimitError` a search
    /// inside it hit. Encodes that hit the limit return incomplete ids: whatever `body` built from
    /// them is discarded by the throw. Outside such a scope a search that hits the limit stops
    /// the program with that message (`Tokenizer.encodeChecked` is the throwing alternative).
    public static func check<R>(_ body: () throws -> R) throws -> R {
        let s = Scope()
        let result = try $scope.withValue(s) { try body() }
        if let f = s.failure { throw f }
        return result
    }

    /// Reports a search that hit the limit.
    static func exceeded(_ e: TokenizerWorkLimitError) {
        guard let s = scope else { fatalError(e.localizedDescription) }   // fatalError: traps in -Ounchecked too
        s.record(e)
    }
}

extension Tokenizer {
    /// `encode`, throwing `TokenizerWorkLimitError` when a pattern of this tokenizer backtracks
    /// beyond its work limit on `text` (see `TokenizerWorkLimit`).
    public func encodeChecked(_ text: String, addSpecialTokens: Bool = false) throws -> [Int] {
        try TokenizerWorkLimit.check { encode(text, addSpecialTokens: addSpecialTokens) }
    }

    /// `decode`, throwing `TokenizerWorkLimitError` like `encodeChecked`.
    public func decodeChecked(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        try TokenizerWorkLimit.check { decode(ids, skipSpecialTokens: skipSpecialTokens) }
    }
}
