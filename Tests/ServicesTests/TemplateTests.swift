import Foundation
import HeraldCampaign
import PostgresNIO
import Testing

/// Template checks at save, rendering and SMS length (SPEC §2), without a database.
@Suite struct TemplateTests {
  func invalid(_ body: () throws -> Void) -> SubscriberValidation.Invalid? {
    do {
      try body()
      return nil
    } catch {
      return error as? SubscriberValidation.Invalid
    }
  }

  @Test func undeclaredVariablesAreRefusedAtSaveNamingThem() {
    let error = invalid {
      _ = try MessageTemplate(
        channel: "email", format: "", subject: "Hello {{first_name}}", body: "<p>{{plan}}</p>",
        variables: [TemplateVariable(name: "plan")])
    }
    #expect(error?.field == "subject")
    #expect(error?.message.contains("'first_name'") == true)
    let inBody = invalid {
      _ = try MessageTemplate(
        channel: "sms", format: "", subject: "", body: "Code {{#vip}}{{code}}{{/vip}}", variables: [.init(name: "vip")])
    }
    #expect(inBody?.field == "body" && inBody?.message.contains("'code'") == true)
  }

  @Test(arguments: [
    ("email", "", "", "body", "subject"),  // e-mail needs a subject
    ("sms", "html", "", "x", "format"),
    ("fax", "", "", "x", "channel"),
    ("sms", "", "", "{{#open}}never closed", "body"),
    ("sms", "", "", "{{> footer}}", "body"),
    ("sms", "", "", "{{first name}}", "body"),
    ("sms", "", "", "  ", "body"),
    ("sms", "", "Subject", "x", "subject"),
  ])
  func badTemplatesNameTheField(channel: String, format: String, subject: String, body: String, field: String) {
    let error = invalid {
      _ = try MessageTemplate(
        channel: channel, format: format, subject: subject, body: body, variables: [.init(name: "open")])
    }
    #expect(error?.field == field, "\(error?.message ?? "accepted")")
  }

  @Test func renderingUsesValuesThenDefaultsAndNeverGuesses() throws {
    let template = try MessageTemplate(
      channel: "email", format: "", subject: "Hi {{first_name}}", body: "<p>{{first_name}}, your plan: {{plan}}</p>",
      variables: [.init(name: "first_name", defaultValue: "there"), .init(name: "plan")])
    #expect(try template.render(["plan": "pro"]) == ("Hi there", "<p>there, your plan: pro</p>"))
    #expect(try template.render(["first_name": "", "plan": "pro"]).subject == "Hi there")
    // HTML bodies escape values; subjects are text.
    let rendered = try template.render(["first_name": "<Ada & Co>", "plan": "pro"])
    #expect(rendered.subject == "Hi <Ada & Co>")
    #expect(rendered.body == "<p>&lt;Ada &amp; Co&gt;, your plan: pro</p>")
    let missing = invalid { _ = try template.render(["first_name": "Ada"]) }
    #expect(missing?.field == "variables.plan")

    let sms = try MessageTemplate(channel: "sms", format: "", subject: "", body: "{{name}} & co", variables: [.init(name: "name")])
    #expect(try sms.render(["name": "A<B"]).body == "A<B & co")
  }

  @Test func subscriberValuesComeFromFieldsThenAttributes() throws {
    let values = MessageTemplate.values(
      id: UUID(), email: "ada@example.com", phone: nil, firstName: "Ada", lastName: "",
      attributes: MessageTemplate.attributes(json: #"{"plan": "pro", "seats": 3, "vip": true, "tags": ["a"], "first_name": "ignored"}"#))
    #expect(values["plan"] == "pro" && values["seats"] == "3" && values["vip"] == "true")
    #expect(values["tags"] == nil)
    #expect(values["first_name"] == "Ada")
  }

  /// Plain variable texts render by concatenation; swift-mustache must agree on every one.
  @Test func plainTextsRenderAsSwiftMustacheDoes() throws {
    let texts = [
      "Hello {{first_name}}, you are number {{n}}.", "{{n}}", "no tags at all", "{{ first_name }}{{n}}{{{n}}}",
      "<p>{{& first_name}} & {{first_name}}</p>\n", "a }} b { c {{n}}", "ünï {{first_name}} 😀",
    ]
    let values = [
      ["first_name": "Ada", "n": "1"], ["first_name": "<b>\"O'Neil\" & co</b>", "n": "&\u{301} é > 2"], ["first_name": "", "n": "{{n}}"],
    ]
    for text in texts {
      for format in ["html", "text"] {
        let parsed = try MessageTemplate.parse(text, field: "body", format: format, declared: ["first_name", "n"])
        #expect(parsed.pieces != nil, "\(text) should not need swift-mustache")
        for value in values {
          let context = RenderContext(values: value)
          #expect(parsed.render(context) == parsed.renderWithMustache(context), "\(format): \(text) with \(value)")
        }
      }
    }
    // Sections, comments and transforms go through swift-mustache; so do texts ending in blanks
    // (it drops them) and, in the text format, texts starting with a blank line (its pragma, a
    // standalone tag, takes that line).
    let others = [
      ("{{#n}}yes{{/n}}", "html"), ("{{! note }}hi", "html"), ("{{uppercased(first_name)}}", "html"), ("{{^n}}none{{/n}}", "html"),
      ("<p>{{n}}</p>\n  ", "html"), ("x {{n}} \t", "text"), ("\nHi {{first_name}}", "text"), (" \t\r\nHi {{n}}", "text"),
    ]
    for (text, format) in others {
      let parsed = try MessageTemplate.parse(text, field: "body", format: format, declared: ["first_name", "n"])
      #expect(parsed.pieces == nil, "\(text)")
      let context = RenderContext(values: ["first_name": "ada", "n": "1"])
      #expect(parsed.render(context) == parsed.renderWithMustache(context))
    }
    // A leading blank line stays in html, where no pragma is put in front.
    let html = try MessageTemplate.parse("\nHi {{first_name}}", field: "body", format: "html", declared: ["first_name"])
    #expect(
      html.pieces != nil
        && html.render(RenderContext(values: ["first_name": "ada"]))
          == html.renderWithMustache(RenderContext(values: ["first_name": "ada"]))
    )
  }

  @Test func smsLengthFollowsGSM7AndUCS2() {
    #expect(SMSLength.measure(String(repeating: "a", count: 160)) == .init(encoding: "GSM-7", units: 160, segments: 1))
    #expect(SMSLength.measure(String(repeating: "a", count: 161)) == .init(encoding: "GSM-7", units: 161, segments: 2))
    #expect(SMSLength.measure(String(repeating: "a", count: 306)).segments == 2)
    #expect(SMSLength.measure(String(repeating: "a", count: 307)).segments == 3)
    // Extension characters take two septets.
    #expect(SMSLength.measure("€10 {x}") == .init(encoding: "GSM-7", units: 10, segments: 1))
    #expect(SMSLength.measure("こんにちは") == .init(encoding: "UCS-2", units: 5, segments: 1))
    #expect(SMSLength.measure(String(repeating: "é", count: 69) + "ç").encoding == "UCS-2")
    #expect(SMSLength.measure(String(repeating: "ж", count: 71)) == .init(encoding: "UCS-2", units: 71, segments: 2))
    // An emoji is two UTF-16 units.
    #expect(SMSLength.measure("hi 👋").units == 5)
  }

  @Test(arguments: [
    (SegmentCondition(field: "favourite_colour", op: "eq", valueJSON: #""red""#), "conditions[0].field"),
    (SegmentCondition(field: "email", op: "like", valueJSON: #""x""#), "conditions[0].op"),
    (SegmentCondition(field: "email", op: "eq", valueJSON: "unquoted"), "conditions[0].value"),
    (SegmentCondition(field: "email_subscribed", op: "eq", valueJSON: #""yes""#), "conditions[0].value"),
    (SegmentCondition(field: "email_subscribed", op: "gt", valueJSON: "true"), "conditions[0].op"),
    (SegmentCondition(field: "attributes.plan", op: "in", valueJSON: "[]"), "conditions[0].value"),
    (SegmentCondition(field: "attributes.", op: "exists", valueJSON: ""), "conditions[0].field"),
    (SegmentCondition(field: "created_at", op: "gt", valueJSON: #""yesterday""#), "conditions[0].value"),
    (SegmentCondition(field: "list", op: "eq", valueJSON: #""not-a-uuid""#), "conditions[0].value"),
    (SegmentCondition(field: "phone", op: "exists", valueJSON: "1"), "conditions[0].value"),
  ])
  func badSegmentConditionsNameTheField(condition: SegmentCondition, field: String) {
    var builder = SQLBuilder()
    do throws(SubscriberValidation.Invalid) {
      _ = try SegmentFilter.compile(match: "all", conditions: [condition], into: &builder)
      Issue.record("accepted \(condition)")
    } catch {
      #expect(error.field == field, "\(error.message)")
    }
  }
}
