import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import HTTPTypes
import HeraldCore
import HeraldProtos
import Hummingbird
import SwiftProtobuf

/// The public routes of a campaign e-mail's unsubscribe link (SPEC §10), without an API key:
///
/// - `POST /u/{token}` with the body `List-Unsubscribe=One-Click` (RFC 8058, what a mailbox
///   provider's unsubscribe button sends): withdraws consent for the link's channel at once; no
///   cookie, no redirect, idempotent; 200 with a short text.
/// - `GET /u/{token}`: the preference page, a small HTML form (no JavaScript) to leave e-mail,
///   SMS or everything. A GET never changes anything: link scanners follow every link.
/// - `POST /u/{token}` with `channel=email|sms|all` (the page's form): withdraws that consent and
///   answers the page with the result.
///
/// The campaign service checks the token's signature; a token that is not genuine is a 404 page
/// that says only that the link is not valid (nothing is found under it).
struct UnsubscribeRoutes: Sendable {
  static let path = "/u/{token}"
  let campaign: Herald_Campaign_V1_CampaignService.Client<HTTP2ClientTransport.Posix>

  func register(on router: some RouterMethods<GatewayRequestContext>) {
    let campaign = self.campaign
    let path = RouterPath(RESTRouter.hummingbirdPath(Self.path))
    let parameter = RESTRouter.pathVariables(Self.path)[0].parameter
    router.get(path) { _, context in
      let token = context.parameters.get(parameter) ?? ""
      do {
        let state = try await ProtoJSON.call("campaign") {
          try await campaign.describeUnsubscribeLink(.with { $0.token = token })
        }
        return Self.html(.ok, Self.page(state, done: nil))
      } catch let problem as Problem where problem.status == .badRequest {
        return Self.html(.notFound, Self.invalidPage)
      }
    }
    router.post(path) { request, context in
      let token = context.parameters.get(parameter) ?? ""
      var request = request
      let body = try await request.collectBody(upTo: 8192)
      let form = Self.form(String(buffer: body), contentType: request.headers[.contentType] ?? "")
      let oneClick = form["List-Unsubscribe"] == "One-Click"
      let channel: Herald_Campaign_V1_ConsentChannel
      if oneClick {
        channel = .unspecified
      } else {
        switch form["channel"] {
        case "email": channel = .email
        case "sms": channel = .sms
        case "all": channel = .all
        default:
          throw Problem.badRequest(
            "send List-Unsubscribe=One-Click, or channel=email, sms or all (application/x-www-form-urlencoded)", field: "channel")
        }
      }
      do {
        let state = try await ProtoJSON.call("campaign") {
          try await campaign.unsubscribeByLink(
            .with {
              $0.token = token
              $0.channel = channel
            })
        }
        if oneClick {
          var headers = HTTPFields()
          headers[.contentType] = "text/plain; charset=utf-8"
          headers[.cacheControl] = "no-store"
          return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: "unsubscribed\n")))
        }
        return Self.html(.ok, Self.page(state, done: channel))
      } catch let problem as Problem where problem.status == .badRequest {
        return Self.html(.notFound, Self.invalidPage)
      }
    }
  }

  /// The fields of a form body: `multipart/form-data` (what RFC 8058 §3.2 says a one-click POST
  /// should be) or `application/x-www-form-urlencoded` (what browsers and most providers send).
  static func form(_ text: String, contentType: String) -> [String: String] {
    let type = contentType.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    guard type == "multipart/form-data" else { return urlEncodedForm(text) }
    guard let boundary = parameter("boundary", of: contentType) else { return [:] }
    var fields: [String: String] = [:]
    for part in text.components(separatedBy: "--\(boundary)").dropFirst() {
      guard !part.hasPrefix("--"), let split = part.range(of: "\r\n\r\n") else { continue }
      let headers = part[..<split.lowerBound]
      guard
        let disposition = headers.split(separator: "\r\n").first(where: {
          $0.lowercased().hasPrefix("content-disposition:")
        }), let name = parameter("name", of: String(disposition))
      else { continue }
      // The line break before the next boundary belongs to the boundary; the values wanted here
      // are single words, so trimming is enough.
      if fields[name] == nil { fields[name] = part[split.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines) }
    }
    return fields
  }

  /// `name=value` or `name="value"` among the `;`-separated parameters of a header value.
  static func parameter(_ name: String, of header: String) -> String? {
    for piece in header.split(separator: ";").dropFirst() {
      let pair = piece.split(separator: "=", maxSplits: 1)
      guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == name else { continue }
      let value = pair[1].trimmingCharacters(in: .whitespaces)
      return value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 ? String(value.dropFirst().dropLast()) : value
    }
    return nil
  }

  /// `a=b&c=d` decoded (`+` as space); later repeats of a name are ignored.
  static func urlEncodedForm(_ text: String) -> [String: String] {
    var fields: [String: String] = [:]
    for pair in text.split(separator: "&") {
      let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      func decoded(_ part: Substring) -> String {
        let spaced = part.replacingOccurrences(of: "+", with: " ")
        return spaced.removingPercentEncoding ?? spaced
      }
      let name = decoded(parts[0]).trimmingCharacters(in: .whitespacesAndNewlines)
      let value = parts.count > 1 ? decoded(parts[1]).trimmingCharacters(in: .whitespacesAndNewlines) : ""
      if fields[name] == nil { fields[name] = value }
    }
    return fields
  }

  static func html(_ status: HTTPResponse.Status, _ page: String) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "text/html; charset=utf-8"
    headers[.cacheControl] = "no-store"
    headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
    return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page)))
  }

  static func document(_ title: String, _ content: String) -> String {
    """
    <!doctype html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="robots" content="noindex">
    <title>\(title.htmlEscaped)</title>
    <style>
    body { font: 16px/1.5 system-ui, sans-serif; margin: 0; padding: 1.5rem; color: #1a1a1a; background: #f6f6f6; }
    main { max-width: 32rem; margin: 0 auto; background: #fff; padding: 1.5rem; border-radius: 8px; }
    h1 { font-size: 1.4rem; margin-top: 0; }
    button { display: block; width: 100%; font: inherit; padding: 0.75rem; margin: 0.5rem 0; border: 1px solid #555;
      border-radius: 6px; background: #fff; cursor: pointer; }
    button:focus { outline: 3px solid #1a5fb4; }
    p[role=status] { background: #e6f4ea; padding: 0.75rem; border-radius: 6px; }
    </style>
    </head>
    <body>
    <main>
    \(content)
    </main>
    </body>
    </html>

    """
  }

  static let invalidPage = document(
    "Link not valid",
    """
    <h1>This link is not valid</h1>
    <p>It may have been copied incompletely. Use the unsubscribe link of a recent message, or reply to it and ask to be removed.</p>
    """)

  /// The preference page: what the recipient receives now, and a button for each way to leave.
  static func page(_ state: Herald_Campaign_V1_UnsubscribeLinkState, done: Herald_Campaign_V1_ConsentChannel?) -> String {
    var content = "<h1>Your subscription</h1>\n"
    if let done {
      let what =
        switch done {
        case .sms: "text messages"
        case .all: "any of our messages"
        default: "e-mail"
        }
      content += "<p role=\"status\">Done: you will no longer receive \(what) from us.</p>\n"
    }
    if !state.maskedEmail.isEmpty { content += "<p>For \(state.maskedEmail.htmlEscaped).</p>\n" }
    var receiving: [String] = []
    if state.emailOnFile && state.emailSubscribed { receiving.append("e-mail") }
    if state.phoneOnFile && state.smsSubscribed { receiving.append("text messages") }
    if receiving.isEmpty {
      content += "<p>You receive no messages from us.</p>\n"
      return document("Your subscription", content)
    }
    content += "<p>You receive \(receiving.joined(separator: " and ")) from us.</p>\n"
    content += "<form method=\"post\">\n"
    if state.emailOnFile && state.emailSubscribed {
      content += "<button type=\"submit\" name=\"channel\" value=\"email\">Unsubscribe from e-mail</button>\n"
    }
    if state.phoneOnFile && state.smsSubscribed {
      content += "<button type=\"submit\" name=\"channel\" value=\"sms\">Unsubscribe from text messages</button>\n"
    }
    if receiving.count > 1 {
      content += "<button type=\"submit\" name=\"channel\" value=\"all\">Unsubscribe from everything</button>\n"
    }
    content += "</form>\n"
    return document("Your subscription", content)
  }
}
