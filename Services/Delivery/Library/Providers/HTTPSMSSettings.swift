import NIOCore

/// How an HTTP SMS provider reaches its gateway: from `HttpSmsSettings`.
package struct HTTPSMSSettings: Sendable, Equatable {
  package var url: String
  package var username: String?
  package var password: String?
  package var bearerToken: String?
  package var from: String
  package var formEncoded: Bool
  package var messageIDField: String?
  package var timeout: TimeAmount = .seconds(15)

  package init(
    url: String, username: String? = nil, password: String? = nil, bearerToken: String? = nil, from: String,
    formEncoded: Bool, messageIDField: String? = nil
  ) {
    self.url = url
    self.username = username
    self.password = password
    self.bearerToken = bearerToken
    self.from = from
    self.formEncoded = formEncoded
    self.messageIDField = messageIDField
  }
}
