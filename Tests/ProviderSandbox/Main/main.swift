import Crypto
import Foundation
import HeraldCore
import ProviderSandbox
import _CryptoExtras

// `provider-sandbox`: the local APNs, FCM and WhatsApp Cloud API server (ProviderSandbox) as a
// process, for the local stack. It serves HTTP/2 over TLS until killed; what it accepted is at
// GET /sandbox/received. Each service is served when its variables are set:
//   PROVIDER_SANDBOX_HOST, _PORT       address (default 127.0.0.1:7300)
//   PROVIDER_SANDBOX_CERT, _KEY        the TLS certificate and its key (PEM files; required)
//   PROVIDER_SANDBOX_APNS_KEY          the APNs .p8 key (PEM file): its public half checks the JWTs
//   PROVIDER_SANDBOX_APNS_TEAM, _KEY_ID, _TOPIC
//   PROVIDER_SANDBOX_FCM_ACCOUNT       a service account's JSON key file; _FCM_PROJECT
//   PROVIDER_SANDBOX_WHATSAPP_PHONE_ID, _TOKEN, _APP_SECRET, _WEBHOOK (Herald's webhook URL)
//   PROVIDER_SANDBOX_WHATSAPP_TEMPLATES  name:language:parameters,... (e.g. order_shipped:en_US:2)
func fail(_ message: String, status: Int32 = 1) -> Never {
  FileHandle.standardError.write(Data("provider-sandbox: \(message)\n".utf8))
  exit(status)
}

let settings = Settings()
func file(_ variable: String) throws -> String? {
  guard let path = settings.optionalString(variable) else { return nil }
  return try String(contentsOfFile: path, encoding: .utf8)
}

do {
  let host = settings.string("PROVIDER_SANDBOX_HOST", default: "127.0.0.1")
  let port = try settings.int("PROVIDER_SANDBOX_PORT", default: 7300, range: 0...65535)
  guard let certificate = try file("PROVIDER_SANDBOX_CERT"), let key = try file("PROVIDER_SANDBOX_KEY") else {
    fail("PROVIDER_SANDBOX_CERT and PROVIDER_SANDBOX_KEY must name the TLS certificate and key (PEM files)", status: 2)
  }
  var apns: ProviderSandbox.APNs?
  if let pem = try file("PROVIDER_SANDBOX_APNS_KEY") {
    apns = ProviderSandbox.APNs(
      teamID: settings.string("PROVIDER_SANDBOX_APNS_TEAM", default: "HERALDTEAM"),
      keyID: settings.string("PROVIDER_SANDBOX_APNS_KEY_ID", default: "HERALDKEY1"),
      publicKeyPEM: try P256.Signing.PrivateKey(pemRepresentation: pem).publicKey.pemRepresentation,
      topic: settings.string("PROVIDER_SANDBOX_APNS_TOPIC", default: "dev.herald.demo"))
  }
  var fcm: ProviderSandbox.FCM?
  if let text = try file("PROVIDER_SANDBOX_FCM_ACCOUNT") {
    guard let account = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
      let email = account["client_email"] as? String, let pem = account["private_key"] as? String
    else { fail("PROVIDER_SANDBOX_FCM_ACCOUNT is not a service account's JSON key") }
    fcm = ProviderSandbox.FCM(
      projectID: settings.string("PROVIDER_SANDBOX_FCM_PROJECT", default: "herald-demo"), clientEmail: email,
      publicKeyPEM: try _RSA.Signing.PrivateKey(pemRepresentation: pem).publicKey.pemRepresentation)
  }
  var whatsapp: ProviderSandbox.WhatsApp?
  if let phone = settings.optionalString("PROVIDER_SANDBOX_WHATSAPP_PHONE_ID") {
    var templates: [String: (language: String, parameters: Int)] = [:]
    for item in settings.string("PROVIDER_SANDBOX_WHATSAPP_TEMPLATES", default: "").split(separator: ",") {
      let parts = item.split(separator: ":")
      guard parts.count == 3, let count = Int(parts[2]) else {
        fail("PROVIDER_SANDBOX_WHATSAPP_TEMPLATES: '\(item)' is not name:language:parameters", status: 2)
      }
      templates[String(parts[0])] = (String(parts[1]), count)
    }
    whatsapp = ProviderSandbox.WhatsApp(
      phoneNumberID: phone, accessToken: try settings.string("PROVIDER_SANDBOX_WHATSAPP_TOKEN", purpose: "the access token to expect"),
      appSecret: try settings.string("PROVIDER_SANDBOX_WHATSAPP_APP_SECRET", purpose: "the app secret that signs webhooks"),
      webhookURL: settings.optionalString("PROVIDER_SANDBOX_WHATSAPP_WEBHOOK"), templates: templates)
  }
  let sandbox = ProviderSandbox(apns: apns, fcm: fcm, whatsapp: whatsapp)
  try await withProviderSandbox(sandbox, certificatePEM: certificate, keyPEM: key, host: host, port: port) { port in
    let served = [apns.map { _ in "APNs" }, fcm.map { _ in "FCM" }, whatsapp.map { _ in "WhatsApp" }].compactMap { $0 }
    FileHandle.standardOutput.write(
      Data("provider-sandbox: serving \(served.joined(separator: ", ")) on https://\(host):\(port) (HTTP/2)\n".utf8))
    while true { try await Task.sleep(for: .seconds(3600)) }
  }
} catch {
  fail("\(error)")
}
