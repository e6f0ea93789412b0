import Foundation

/// Splits a template into text and tags, then builds the node tree (ChatTemplate.swift).
struct TemplateParser {
    enum Piece { case text(String), output(String, Int), statement(String, Int) }
    let source: [Character]
    init(_ text: String) { source = Array(text) }

    func parse() throws -> [TemplateNode] {
        var pieces = try lex()[...]
        let nodes = try block(&pieces, until: [])
        if let extra = pieces.first, case let .statement(s, at) = extra {
            throw ChatTemplateError.syntax("unexpected '{% \(s) %}'", offset: at)
        }
        return nodes
    }

    /// Text, `{{ }}`, `{% %}` pieces (comments dropped), with Jinja's whitespace control applied
    /// as transformers configures it (`trim_blocks` and `lstrip_blocks` on): a block or comment
    /// tag eats the newline right after it and the spaces before it on its line.
    func lex() throws -> [Piece] {
        var out: [Piece] = []
        var text = "", i = 0, trimNext = false, newlineNext = false
        func flush(trimTail: Bool, block: Bool) {
            var t = text
            if newlineNext, t.first == "\n" { t.removeFirst() }
            if trimNext { t = String(t.drop(while: \.isWhitespace)) }
            if trimTail { while let last = t.last, last.isWhitespace { t.removeLast() } }
            if block {                                                        // lstrip_blocks
                let line = t.reversed().prefix { $0 != "\n" }
                if line.allSatisfy({ $0 == " " || $0 == "\t" }), !line.isEmpty || t.isEmpty || t.last == "\n" {
                    t.removeLast(line.count)
                }
            }
            if !t.isEmpty { out.append(.text(t)) }
            text = ""; trimNext = false; newlineNext = false
        }
        while i < source.count {
            guard source[i] == "{", i + 1 < source.count, "{%#".contains(source[i + 1]) else {
                text.append(source[i]); i += 1; continue
            }
            let open = source[i + 1], close: Character = open == "{" ? "}" : (open == "%" ? "%" : "#")
            let start = i
            var j = i + 2
            let trimBefore = j < source.count && source[j] == "-"
            if trimBefore || (j < source.count && source[j] == "+") { j += 1 }
            var end = j
            while end + 1 < source.count && !(source[end] == close && source[end + 1] == "}") {
                if open != "#" && (source[end] == "'" || source[end] == "\"") {      // skip string literals
                    let q = source[end]; end += 1
                    while end < source.count && source[end] != q { end += source[end] == "\\" ? 2 : 1 }
                }
                end += 1
            }
            guard end + 1 < source.count else { throw ChatTemplateError.syntax("unclosed '{\(open)'", offset: start) }
            var bodyEnd = end
            let trimAfter = bodyEnd > j && source[bodyEnd - 1] == "-"
            if trimAfter || (bodyEnd > j && source[bodyEnd - 1] == "+") { bodyEnd -= 1 }
            let plus = j > i + 2 && source[j - 1] == "+"
            flush(trimTail: trimBefore, block: open != "{" && !plus)
            let body = String(source[j..<max(j, bodyEnd)]).trimmingCharacters(in: .whitespacesAndNewlines)
            if open == "{" { out.append(.output(body, start)) } else if open == "%" { out.append(.statement(body, start)) }
            trimNext = trimAfter
            newlineNext = open != "{"                                         // trim_blocks
            i = end + 2
        }
        flush(trimTail: false, block: false)
        return out
    }

    /// Nodes up to a statement whose keyword is in `until` (left in `pieces`).
    func block(_ pieces: inout ArraySlice<Piece>, until: Set<String>) throws -> [TemplateNode] {
        var nodes: [TemplateNode] = []
        while let piece = pieces.first {
            switch piece {
            case .text(let t): nodes.append(.text(t)); pieces.removeFirst()
            case let .output(e, at): nodes.append(.output(try ExprParser.parse(e, offset: at))); pieces.removeFirst()
            case let .statement(s, at):
                let keyword = String(s.prefix { $0.isLetter || $0 == "_" })
                if until.contains(keyword) { return nodes }
                pieces.removeFirst()
                let rest = String(s.dropFirst(keyword.count)).trimmingCharacters(in: .whitespaces)
                switch keyword {
                case "if":
                    var branches: [(TemplateExpr?, [TemplateNode])] = []
                    var condition: TemplateExpr? = try ExprParser.parse(rest, offset: at)
                    while true {
                        let body = try block(&pieces, until: ["elif", "else", "endif"])
                        branches.append((condition, body))
                        guard case let .statement(next, nextAt)? = pieces.first else {
                            throw ChatTemplateError.syntax("'{% if %}' without '{% endif %}'", offset: at)
                        }
                        pieces.removeFirst()
                        if next.hasPrefix("elif") { condition = try ExprParser.parse(String(next.dropFirst(4)), offset: nextAt) }
                        else if next.hasPrefix("else") { condition = nil }
                        else { break }
                    }
                    nodes.append(.ifChain(branches))
                case "for":
                    let parts = rest.components(separatedBy: " in ")
                    let name = parts[0].trimmingCharacters(in: .whitespaces)
                    guard parts.count >= 2, !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                        throw ChatTemplateError.unsupported("'{% for \(rest) %}' (one loop variable only)", offset: at)
                    }
                    let seq = try ExprParser.parse(parts.dropFirst().joined(separator: " in "), offset: at)
                    let body = try block(&pieces, until: ["endfor", "else"])
                    guard case let .statement(next, _)? = pieces.first, next.hasPrefix("endfor") else {
                        throw ChatTemplateError.unsupported("'{% for %}' without '{% endfor %}' (or with '{% else %}')", offset: at)
                    }
                    pieces.removeFirst()
                    nodes.append(.forLoop(variable: name, in: seq, body: body))
                case "set":
                    guard let eq = rest.firstIndex(of: "=") else {
                        throw ChatTemplateError.unsupported("block '{% set %}'", offset: at)
                    }
                    let name = rest[..<eq].trimmingCharacters(in: .whitespaces)
                    guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                        throw ChatTemplateError.unsupported("'{% set \(name) %}' (a plain name only)", offset: at)
                    }
                    nodes.append(.set(name, try ExprParser.parse(String(rest[rest.index(after: eq)...]), offset: at)))
                default:
                    throw ChatTemplateError.unsupported("'{% \(keyword) %}'", offset: at)
                }
            }
        }
        return nodes
    }
}
