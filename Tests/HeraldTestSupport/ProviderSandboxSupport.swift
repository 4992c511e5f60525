import Crypto
import Foundation
import ProviderSandbox
import _CryptoExtras

/// Keys as the push services hand them out, made fresh for a test: an APNs .p8 key (P-256, PKCS#8
/// PEM) and a Google service account's JSON key (RSA), with their public halves for the sandbox.
package struct TestPushKeys: Sendable {
  package var apnsPrivatePEM: String
  package var apnsPublicPEM: String
  package var serviceAccountEmail = "herald-push@herald-test.iam.gserviceaccount.com"
  package var fcmPrivatePEM: String
  package var fcmPublicPEM: String

  /// One set for the whole test process: an RSA key takes a while to make on a loaded machine.
  package static let shared: TestPushKeys = {
    do {
      return try TestPushKeys()
    } catch {
      fatalError("the test push keys could not be made: \(error)")
    }
  }()

  package init() throws {
    let apns = P256.Signing.PrivateKey()
    apnsPrivatePEM = apns.pemRepresentation
    apnsPublicPEM = apns.publicKey.pemRepresentation
    let fcm = try _RSA.Signing.PrivateKey(keySize: .bits2048)
    fcmPrivatePEM = fcm.pemRepresentation
    fcmPublicPEM = fcm.publicKey.pemRepresentation
  }

  /// The service account's JSON key, its token endpoint at `tokenURI`.
  package func serviceAccountJSON(tokenURI: String) throws -> String {
    let object: [String: Any] = [
      "type": "service_account", "project_id": "herald-test", "private_key_id": "k1", "private_key": fcmPrivatePEM,
      "client_email": serviceAccountEmail, "token_uri": tokenURI,
    ]
    return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
  }
}

/// `sandbox` served over HTTP/2 with TLS on a free loopback port, with a fresh self-signed
/// certificate for 127.0.0.1 and localhost (made by openssl), for the duration of `body`, which
/// gets the port and the certificate's PEM (to trust).
package func withProviderSandbox<T: Sendable>(
  _ sandbox: ProviderSandbox, _ body: (_ port: Int, _ certificatePEM: String) async throws -> T
) async throws -> T {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("herald-sandbox-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: folder) }
  try PostgresTools.run(
    "/usr/bin/openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1", "-keyout", folder + "/key.pem", "-out",
      folder + "/cert.pem",
    ])
  let certificate = try String(contentsOfFile: folder + "/cert.pem", encoding: .utf8)
  let key = try String(contentsOfFile: folder + "/key.pem", encoding: .utf8)
  return try await withProviderSandbox(sandbox, certificatePEM: certificate, keyPEM: key) { port in
    try await body(port, certificate)
  }
}
