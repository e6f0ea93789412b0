import Foundation

/// A model's chat template (the Jinja text of a GGUF's `tokenizer.chat_template` or a
/// tokenizer_config.json's `chat_template`), rendered by a small Jinja subset: enough for
/// ChatML-style templates such as SmolLM2's, Qwen2's and Llama 2/3's.
///
/// Supported: text; `{{ expr }}`; `{% if %}` / `{% elif %}` / `{% else %}` / `{% endif %}`;
/// `{% for x in expr %}` ... `{% endfor %}` with `loop.first`, `loop.last`, `loop.index`,
/// `loop.index0`, `loop.length`; `{% set name = expr %}`; `{# comments #}`; whitespace control
/// (`{%-`, `-%}`, `{{-`, `-}}`). Expressions: string, integer and boolean literals, `none`,
/// names, `a.b`, `a['b']`, `a[0]`, `a[-1]`, `+`, `-`, `*`, `%` (integers), `~`, `==`, `!=`, `<`, `>`, `<=`, `>=`, `and`,
/// `or`, `not`, `in`, `not in`, `is defined`, `is not defined`, `is none`, `is string`,
/// parentheses, the filters `trim`, `length`, `string`, `upper`, `lower`, the methods `strip()`,
/// `upper()`, `lower()`, and `raise_exception(msg)`. Anything else is an error naming it
/// (`ChatTemplateError`), never a silently wrong prompt.
public struct ChatTemplate: Sendable {
    public let source: String
    let nodes: [TemplateNode]

    public init(_ source: String) throws {
        self.source = source
        nodes = try TemplateParser(source).parse()
    }

    /// One conversation turn.
    public struct Message: Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) { self.role = role; self.content = content }
    }

    /// Renders the conversation as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=...)` does.
    public func render(messages: [Message], addGenerationPrompt: Bool = true,
                       bosToken: String = "", eosToken: String = "") throws -> String {
        var scope: [String: TemplateValue] = [
            "messages": .list(messages.map { .dict(["role": .string($0.role), "content": .string($0.content)]) }),
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken), "eos_token": .string(eosToken),
        ]
        var out = ""
        try TemplateRenderer.render(nodes, scope: &scope, into: &out)
        return out
    }
}

/// Why a chat template could not be rendered.
public enum ChatTemplateError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// Syntax KVLab's Jinja subset does not know (offset into the template).
    case unsupported(String, offset: Int)
    case syntax(String, offset: Int)
    /// The template itself raised (`raise_exception`), or a value had the wrong type.
    case failed(String)

    public var description: String {
        switch self {
        case let .unsupported(what, at):
            return "chat template: \(what) at character \(at) is outside the Jinja subset KVLab renders (ChatTemplate.swift lists it)"
        case let .syntax(what, at): return "chat template: \(what) at character \(at)"
        case let .failed(what): return "chat template: \(what)"
        }
    }
    public var errorDescription: String? { description }
}

/// A template value.
indirect enum TemplateValue: Equatable, Sendable {
    case string(String), int(Int), bool(Bool), none, undefined
    case list([TemplateValue]), dict([String: TemplateValue])

    var truthy: Bool {
        switch self {
        case .string(let s): return !s.isEmpty
        case .int(let i): return i != 0
        case .bool(let b): return b
        case .none, .undefined: return false
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        }
    }

    /// As `{{ }}` prints it.
    var text: String {
        switch self {
        case .string(let s): return s
        case .int(let i): return String(i)
        case .bool(let b): return b ? "True" : "False"
        case .none: return "None"
        case .undefined: return ""
        case .list, .dict: return "\(self)"
        }
    }
}

/// A parsed template: text, output and control nodes.
indirect enum TemplateNode: Sendable {
    case text(String)
    case output(TemplateExpr)
    case ifChain([(TemplateExpr?, [TemplateNode])])           // nil condition: else
    case forLoop(variable: String, in: TemplateExpr, body: [TemplateNode])
    case set(String, TemplateExpr)
}

/// Evaluates parsed nodes.
enum TemplateRenderer {
    static func render(_ nodes: [TemplateNode], scope: inout [String: TemplateValue], into out: inout String) throws {
        for node in nodes {
            switch node {
            case .text(let t): out += t
            case .output(let e): out += try e.evaluate(scope).text
            case .set(let name, let e): scope[name] = try e.evaluate(scope)
            case .ifChain(let branches):
                for (condition, body) in branches where try condition?.evaluate(scope).truthy ?? true {
                    try render(body, scope: &scope, into: &out)
                    break
                }
            case let .forLoop(variable, sequence, body):
                let items: [TemplateValue]
                switch try sequence.evaluate(scope) {
                case .list(let l): items = l
                case .string(let s): items = s.map { .string(String($0)) }
                case .none, .undefined: items = []
                case let other: throw ChatTemplateError.failed("cannot loop over \(other)")
                }
                // Jinja scoping: what the body sets stays inside the iteration.
                let outer = scope
                for (i, item) in items.enumerated() {
                    scope = outer
                    scope[variable] = item
                    scope["loop"] = .dict(["index0": .int(i), "index": .int(i + 1), "first": .bool(i == 0),
                                           "last": .bool(i == items.count - 1), "length": .int(items.count)])
                    try render(body, scope: &scope, into: &out)
                }
                scope = outer
            }
        }
    }
}
