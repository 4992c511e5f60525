/// The server broke the protocol (a malformed or overlong reply) or closed the connection.
package struct SMTPProtocolError: Error, Sendable, CustomStringConvertible {
  package var description: String
}
