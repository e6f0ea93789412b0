import Foundation

/// A Jinja expression of the subset ChatTemplate renders.
indirect enum TemplateExpr: Sendable {
    case literal(TemplateValue)
    case name(String)
    case attribute(TemplateExpr, String)
    case index(TemplateExpr, TemplateExpr)
    case unary(String, TemplateExpr)                  // not, -
    case binary(String, TemplateExpr, TemplateExpr)   // + ~ == != < > <= >= and or in notin
    case test(TemplateExpr, String, negated: Bool)    // is defined / none / string
    case filter(TemplateExpr, String)
    case call(String, [TemplateExpr])                 // raise_exception(...)
    case method(TemplateExpr, String)                 // x.strip() ...

    func evaluate(_ scope: [String: TemplateValue]) throws -> TemplateValue {
        switch self {
        case .literal(let v): return v
        case .name(let n): return scope[n] ?? .undefined
        case let .attribute(base, name):
            if case .dict(let d) = try base.evaluate(scope) { return d[name] ?? .undefined }
            return .undefined
        case let .index(base, key):
            let b = try base.evaluate(scope), k = try key.evaluate(scope)
            switch (b, k) {
            case let (.dict(d), .string(s)): return d[s] ?? .undefined
            case let (.list(l), .int(i)):
                let j = i < 0 ? l.count + i : i
                return l.indices.contains(j) ? l[j] : .undefined
            default: return .undefined
            }
        case let .unary(op, e):
            let v = try e.evaluate(scope)
            if op == "not" { return .bool(!v.truthy) }
            guard case .int(let i) = v else { throw ChatTemplateError.failed("cannot negate \(v)") }
            return .int(-i)
        case let .binary(op, l, r):
            if op == "and" { let a = try l.evaluate(scope); return a.truthy ? try r.evaluate(scope) : a }
            if op == "or" { let a = try l.evaluate(scope); return a.truthy ? a : try r.evaluate(scope) }
            return try Self.apply(op, try l.evaluate(scope), try r.evaluate(scope))
        case let .test(e, name, negated):
            let v = try e.evaluate(scope)
            let result: Bool
            switch name {
            case "defined": if case .undefined = v { result = false } else { result = true }
            case "none": result = v == .none
            case "string": if case .string = v { result = true } else { result = false }
            default: throw ChatTemplateError.failed("unsupported test 'is \(name)'")
            }
            return .bool(result != negated)
        case let .filter(e, name):
            let v = try e.evaluate(scope)
            switch (name, v) {
            case ("trim", .string(let s)): return .string(s.trimmingCharacters(in: .whitespacesAndNewlines))
            case ("upper", .string(let s)): return .string(s.uppercased())
            case ("lower", .string(let s)): return .string(s.lowercased())
            case ("string", _): return .string(v.text)
            case ("length", .string(let s)): return .int(s.count)
            case ("length", .list(let l)): return .int(l.count)
            default: throw ChatTemplateError.failed("filter '\(name)' does not apply to \(v)")
            }
        case let .method(e, name):
            guard case .string(let s) = try e.evaluate(scope) else { throw ChatTemplateError.failed("method '\(name)()' needs a string") }
            switch name {
            case "strip": return .string(s.trimmingCharacters(in: .whitespacesAndNewlines))
            case "upper": return .string(s.uppercased())
            default: return .string(s.lowercased())
            }
        case let .call(name, args):
            let text = try args.map { try $0.evaluate(scope).text }.joined(separator: " ")
            throw ChatTemplateError.failed("the template raised an exception (\(name)): \(text)")
        }
    }

    static func apply(_ op: String, _ a: TemplateValue, _ b: TemplateValue) throws -> TemplateValue {
        switch (op, a, b) {
        case let ("+", .string(x), .string(y)), let ("~", .string(x), .string(y)): return .string(x + y)
        case ("~", _, _): return .string(a.text + b.text)
        case let ("+", .int(x), .int(y)): return .int(x + y)
        case let ("-", .int(x), .int(y)): return .int(x - y)
        case let ("*", .int(x), .int(y)): return .int(x * y)
        case let ("%", .int(x), .int(y)) where y != 0: return .int(((x % y) + y) % y)   // Python's sign
        case ("==", _, _): return .bool(a == b)
        case ("!=", _, _): return .bool(a != b)
        case let ("<", .int(x), .int(y)): return .bool(x < y)
        case let (">", .int(x), .int(y)): return .bool(x > y)
        case let ("<=", .int(x), .int(y)): return .bool(x <= y)
        case let (">=", .int(x), .int(y)): return .bool(x >= y)
        case ("in", _, _), ("notin", _, _):
            let found: Bool
            switch b {
            case .string(let s): if case .string(let t) = a { found = s.contains(t) } else { found = false }
            case .list(let l): found = l.contains(a)
            case .dict(let d): if case .string(let t) = a { found = d[t] != nil } else { found = false }
            default: found = false
            }
            return .bool(op == "in" ? found : !found)
        default: throw ChatTemplateError.failed("operator '\(op)' does not apply to \(a) and \(b)")
        }
    }
}

/// Recursive-descent parser of one expression (precedence: or < and < not < comparison/in/is <
/// + - ~ < * % < unary minus < postfix . [] () |).
struct ExprParser {
    enum Token: Equatable { case name(String), string(String), int(Int), op(String), end }
    private var tokens: [Token] = []
    private var i = 0
    private let offset: Int

    init(_ text: String, offset: Int) throws {
        self.offset = offset
        tokens = try Self.lex(Array(text), offset: offset)
    }

    /// The expression `text` (of the tag at `offset`), all of it.
    static func parse(_ text: String, offset: Int) throws -> TemplateExpr {
        var p = try ExprParser(text, offset: offset)
        return try p.parseAll()
    }

    mutating func parseAll() throws -> TemplateExpr {
        let e = try parseOr()
        guard tokens[i] == .end else { throw ChatTemplateError.unsupported("expression syntax near \(tokens[i])", offset: offset) }
        return e
    }

    private var peek: Token { tokens[i] }
    private mutating func next() -> Token { defer { i += 1 }; return tokens[i] }
    private mutating func accept(_ t: Token) -> Bool { if peek == t { i += 1; return true }; return false }
    private mutating func expect(_ t: Token) throws {
        guard accept(t) else { throw ChatTemplateError.syntax("expected \(t), found \(peek)", offset: offset) }
    }

    private mutating func parseOr() throws -> TemplateExpr {
        var e = try parseAnd()
        while accept(.name("or")) { e = .binary("or", e, try parseAnd()) }
        return e
    }
    private mutating func parseAnd() throws -> TemplateExpr {
        var e = try parseNot()
        while accept(.name("and")) { e = .binary("and", e, try parseNot()) }
        return e
    }
    private mutating func parseNot() throws -> TemplateExpr {
        if accept(.name("not")) { return .unary("not", try parseNot()) }
        return try parseComparison()
    }
    private mutating func parseComparison() throws -> TemplateExpr {
        var e = try parseAdd()
        while true {
            if case .op(let o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) { i += 1; e = .binary(o, e, try parseAdd()); continue }
            if accept(.name("in")) { e = .binary("in", e, try parseAdd()); continue }
            if peek == .name("not"), tokens[i + 1] == .name("in") { i += 2; e = .binary("notin", e, try parseAdd()); continue }
            if accept(.name("is")) {
                let negated = accept(.name("not"))
                guard case .name(let test) = next() else { throw ChatTemplateError.syntax("expected a test name after 'is'", offset: offset) }
                e = .test(e, test, negated: negated)
                continue
            }
            return e
        }
    }
    private mutating func parseAdd() throws -> TemplateExpr {
        var e = try parseMul()
        while case .op(let o) = peek, ["+", "-", "~"].contains(o) { i += 1; e = .binary(o, e, try parseMul()) }
        return e
    }
    private mutating func parseMul() throws -> TemplateExpr {
        var e = try parseUnary()
        while case .op(let o) = peek, o == "*" || o == "%" { i += 1; e = .binary(o, e, try parseUnary()) }
        if peek == .op("/") { throw ChatTemplateError.unsupported("operator '/'", offset: offset) }
        return e
    }
    private mutating func parseUnary() throws -> TemplateExpr {
        if accept(.op("-")) { return .unary("-", try parseUnary()) }
        return try parsePostfix()
    }
    private mutating func parsePostfix() throws -> TemplateExpr {
        var e = try parsePrimary()
        while true {
            if accept(.op(".")) {
                guard case .name(let n) = next() else { throw ChatTemplateError.syntax("expected a name after '.'", offset: offset) }
                if accept(.op("(")) {
                    try expect(.op(")"))
                    guard ["strip", "upper", "lower"].contains(n) else { throw ChatTemplateError.unsupported("method '\(n)()'", offset: offset) }
                    e = .method(e, n)
                } else { e = .attribute(e, n) }
            } else if accept(.op("[")) {
                if peek == .op(":") { throw ChatTemplateError.unsupported("slices", offset: offset) }
                let key = try parseOr()
                if peek == .op(":") { throw ChatTemplateError.unsupported("slices", offset: offset) }
                try expect(.op("]"))
                e = .index(e, key)
            } else if accept(.op("|")) {
                guard case .name(let f) = next(), ["trim", "length", "string", "upper", "lower"].contains(f) else {
                    throw ChatTemplateError.unsupported("filter '\(tokens[i - 1])'", offset: offset)
                }
                if peek == .op("(") { throw ChatTemplateError.unsupported("filter arguments", offset: offset) }
                e = .filter(e, f)
            } else { return e }
        }
    }
    private mutating func parsePrimary() throws -> TemplateExpr {
        switch next() {
        case .string(let s):
            var text = s                                       // adjacent literals concatenate
            while case .string(let more) = peek { text += more; i += 1 }
            return .literal(.string(text))
        case .int(let n): return .literal(.int(n))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: break
            }
            if accept(.op("(")) {
                guard n == "raise_exception" else { throw ChatTemplateError.unsupported("function '\(n)()'", offset: offset) }
                var args: [TemplateExpr] = []
                while !accept(.op(")")) { args.append(try parseOr()); _ = accept(.op(",")) }
                return .call(n, args)
            }
            return .name(n)
        case .op("("):
            let e = try parseOr()
            try expect(.op(")"))
            return e
        case .op("["), .op("{"): throw ChatTemplateError.unsupported("list and dict literals", offset: offset)
        case let t: throw ChatTemplateError.syntax("unexpected \(t)", offset: offset)
        }
    }

    static func lex(_ c: [Character], offset: Int) throws -> [Token] {
        var out: [Token] = [], i = 0
        while i < c.count {
            let ch = c[i]
            if ch.isWhitespace { i += 1; continue }
            if ch == "'" || ch == "\"" {
                var s = ""; i += 1
                while i < c.count && c[i] != ch {
                    if c[i] == "\\" && i + 1 < c.count {
                        i += 1
                        switch c[i] { case "n": s.append("\n"); case "t": s.append("\t"); case "r": s.append("\r"); default: s.append(c[i]) }
                    } else { s.append(c[i]) }
                    i += 1
                }
                guard i < c.count else { throw ChatTemplateError.syntax("unterminated string", offset: offset) }
                i += 1; out.append(.string(s)); continue
            }
            if ch.isNumber {
                var n = ""; while i < c.count && c[i].isNumber { n.append(c[i]); i += 1 }
                out.append(.int(Int(n) ?? 0)); continue
            }
            if ch.isLetter || ch == "_" {
                var n = ""; while i < c.count && (c[i].isLetter || c[i].isNumber || c[i] == "_") { n.append(c[i]); i += 1 }
                out.append(.name(n)); continue
            }
            let two = i + 1 < c.count ? String([ch, c[i + 1]]) : ""
            if ["==", "!=", "<=", ">="].contains(two) { out.append(.op(two)); i += 2; continue }
            guard "+~<>().[]|,:-*/%{}=".contains(ch) else { throw ChatTemplateError.unsupported("character '\(ch)'", offset: offset) }
            out.append(.op(String(ch))); i += 1
        }
        out.append(.end)
        return out
    }
}
