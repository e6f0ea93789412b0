// Reading a config's YAML with bounds (issue 16): Yams composes nodes recursively, so 5,000 nested
// brackets in a 10 KB file overflowed the stack. The text is measured first: its size, then an
// upper bound of its nesting depth, before Yams sees it. Syntax errors name file:line:column.
import Foundation
import Yams

enum YAMLInput {
    /// Largest config accepted (configs are a few KB; this bounds everything after).
    static let maxBytes = 1 << 20
    /// Deepest nesting accepted (a config needs about 6 levels: tasks / entry / key / list).
    static let maxDepth = 64

    /// The root node of `text`, or a `ConfigError` naming the file and position.
    static func compose(_ text: String, file: String) throws -> Node {
        if text.utf8.count > maxBytes {
            throw ConfigError(file: file, field: "", message: "the config is \(text.utf8.count) bytes; configs are limited to \(maxBytes) bytes")
        }
        if let deep = deepestLine(text, limit: maxDepth) {
            throw ConfigError(file: file, line: deep.line, column: deep.column, field: "",
                              message: "nesting deeper than \(maxDepth) levels (lists and mappings inside each other); a config needs a handful")
        }
        do {
            guard let node = try Yams.compose(yaml: text) else { throw ConfigError(file: file, field: "", message: "empty config") }
            return node
        } catch let e as ConfigError { throw e } catch let e as YamlError {
            throw located(e, file: file)
        } catch {
            throw ConfigError(file: file, field: "", message: "invalid YAML: \(error.localizedDescription)")
        }
    }

    /// A Yams error as "file:line:column: invalid YAML: <problem> (<context> at line:column)".
    static func located(_ e: YamlError, file: String) -> ConfigError {
        func make(_ context: YamlError.Context?, _ problem: String, _ mark: Mark) -> ConfigError {
            var message = "invalid YAML: \(problem)"
            if let c = context { message += " (\(c.text) at \(c.mark.line):\(c.mark.column))" }
            return ConfigError(file: file, line: mark.line, column: mark.column, field: "", message: message)
        }
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return make(context, problem, mark)
        case let .reader(problem, offset, _, yaml):
            guard let offset, offset <= yaml.utf8.count else {
                return ConfigError(file: file, field: "", message: "invalid YAML: \(problem)")
            }
            let before = yaml.utf8.prefix(offset)
            let line = before.filter { $0 == 10 }.count + 1
            let column = before.count - (before.lastIndex(of: 10).map { before.distance(from: before.startIndex, to: $0) + 1 } ?? 0) + 1
            return ConfigError(file: file, line: line, column: column, field: "", message: "invalid YAML: \(problem)")
        default:
            return ConfigError(file: file, field: "", message: "invalid YAML: \(e)")
        }
    }

    /// The first position where an upper bound of the nesting depth exceeds `limit`, or nil.
    ///
    /// The bound adds, at each point of the text: the open flow brackets (`[`, `{` that start a
    /// collection, outside quotes and comments), the block indentation levels still open (each
    /// deeper level of a block collection is indented further) and the block entries that start
    /// on the current line (`- - - x` nests three lists on one line). Every collection Yams can
    /// build adds 1 to one of these, so the true depth is never above the bound; plain text
    /// (comments, quoted strings, block scalars after `|` or `>`) adds nothing.
    static func deepestLine(_ text: String, limit: Int) -> (line: Int, column: Int)? {
        var flow = 0
        var indents: [Int] = []
        var blockScalarIndent: Int? = nil   // lines more indented than this belong to a block scalar
        var quote: UInt8? = nil
        var lineNumber = 0
        for rawLine in text.utf8.split(separator: 10, omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = Array(rawLine)
            let indent = line.prefix { $0 == 32 }.count
            let blank = line.allSatisfy { $0 == 32 || $0 == 9 || $0 == 13 }
            if let s = blockScalarIndent {
                if blank || indent > s { continue }
                blockScalarIndent = nil
            }
            if quote == nil && flow == 0 && !blank && line[indent] != UInt8(ascii: "#") {
                while let last = indents.last, last > indent { indents.removeLast() }
                if indents.last != indent { indents.append(indent) }
            }
            var entries = 0
            var i = indent
            while i < line.count {
                let c = line[i]
                if let q = quote {
                    if c == q {
                        if q == UInt8(ascii: "'"), i + 1 < line.count, line[i + 1] == q { i += 2; continue }
                        quote = nil
                    } else if q == UInt8(ascii: "\""), c == UInt8(ascii: "\\") { i += 1 }
                    i += 1; continue
                }
                let startOfToken = i == indent || [32, 9, UInt8(ascii: ","), UInt8(ascii: "["), UInt8(ascii: "{"),
                                                   UInt8(ascii: ":"), UInt8(ascii: "-"), UInt8(ascii: "?")].contains(line[i - 1])
                switch c {
                case UInt8(ascii: "#") where i == 0 || line[i - 1] == 32 || line[i - 1] == 9:
                    i = line.count; continue
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    if startOfToken { quote = c }
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    if startOfToken || flow > 0 { flow += 1 }
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    if flow > 0 { flow -= 1 }
                case UInt8(ascii: "-"), UInt8(ascii: "?"):
                    if flow == 0, startOfToken, i + 1 == line.count || line[i + 1] == 32 { entries += 1 }
                case UInt8(ascii: "|"), UInt8(ascii: ">"):
                    if flow == 0, startOfToken, isBlockScalarHeader(line[(i + 1)...]) { blockScalarIndent = indent }
                default: break
                }
                if flow + indents.count + entries > limit { return (lineNumber, i + 1) }
                i += 1
            }
        }
        return nil
    }

    /// Whether what follows a `|` or `>` makes it a block scalar header: indentation and chomping
    /// indicators, then nothing but an optional comment.
    static func isBlockScalarHeader(_ rest: ArraySlice<UInt8>) -> Bool {
        var i = rest.startIndex
        while i < rest.endIndex, rest[i] == UInt8(ascii: "+") || rest[i] == UInt8(ascii: "-") || (48 ... 57).contains(rest[i]) { i += 1 }
        while i < rest.endIndex, rest[i] == 32 || rest[i] == 9 || rest[i] == 13 { i += 1 }
        return i == rest.endIndex || (rest[i] == UInt8(ascii: "#") && i > rest.startIndex)
    }
}
