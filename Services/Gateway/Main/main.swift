import Foundation
import HeraldCore
import HeraldGateway
import HeraldMigrations
import HeraldServerKit
import Hummingbird

await ProcessCommand.runUnlessServe(
  executable: "gateway", migrations: HeraldMigrations.gateway, probeChecks: GatewayProbe.checks,
  probe: { await GatewayProbe.http($0) })

let settings = Settings()
do {
  let configuration = try GatewayConfiguration.load(settings: settings)
  let registry = Observability.bootstrap(service: "gateway", level: try settings.logLevel())
  let app = try buildGateway(configuration: configuration, registry: registry)
  try await app.runService()
} catch {
  FileHandle.standardError.write(Data("herald gateway: \(error)\n".utf8))
  exit(1)
}
