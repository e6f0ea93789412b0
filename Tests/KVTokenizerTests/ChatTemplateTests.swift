import Foundation
import XCTest
@testable import KVTokenizer

/// KVLab's Jinja subset against transformers' renderer (jinja2, trim_blocks + lstrip_blocks) on
/// public chat templates (scripts/fixtures/make_chat_template_fixtures.py), and clear errors for
/// what the subset does not render.
final class ChatTemplateTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            var template: String
            var messages: [[String: String]]
            var add_generation_prompt: Bool
            var output: String?
            var error: String?
        }
        var templates: [String: String]
        var bos_token: String
        var eos_token: String
        var cases: [Case]
    }

    func testRendersLikeTransformers() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent("chat_templates.json")
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertGreaterThanOrEqual(f.cases.count, 30)
        for c in f.cases {
            let t = try ChatTemplate(f.templates[c.template]!)
            let messages = c.messages.map { ChatTemplate.Message(role: $0["role"]!, content: $0["content"]!) }
            let label = "\(c.template) \(messages.map(\.role)) gen=\(c.add_generation_prompt)"
            do {
                let out = try t.render(messages: messages, addGenerationPrompt: c.add_generation_prompt,
                                       bosToken: f.bos_token, eosToken: f.eos_token)
                XCTAssertEqual(out, c.output, label)
                XCTAssertNil(c.error, "\(label): transformers raised, KVLab rendered")
            } catch let e as ChatTemplateError {
                guard let expected = c.error else { XCTFail("\(label): \(e)"); continue }
                XCTAssertTrue(e.description.contains(expected), "\(label): \(e)")
            }
        }
    }

    func testUnsupportedSyntaxIsAClearError() {
        let cases: [(String, String)] = [
            ("{% macro f() %}x{% endmacro %}", "'{% macro %}'"),
            ("{{ messages | map(attribute='role') }}", "filter"),
            ("{% set ns = namespace(found=false) %}", "function 'namespace()'"),
            ("{{ messages[1:] }}", "slices"),
            ("{% for a, b in x %}{% endfor %}", "one loop variable"),
            ("{{ 'a' }", "unclosed"),
            ("{% if x %}y", "without '{% endif %}'"),
        ]
        for (template, expected) in cases {
            XCTAssertThrowsError(try ChatTemplate(template).render(messages: [.init(role: "user", content: "hi")])) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(template): \(e)")
                XCTAssertTrue("\(e)".hasPrefix("chat template:"), "\(e)")
            }
        }
    }
}
