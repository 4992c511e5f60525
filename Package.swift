// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

extension Target.Dependency {
  static let grpcCore = Target.Dependency.product(name: "GRPCCore", package: "grpc-swift-2")
  static let grpcProtobuf = Target.Dependency.product(name: "GRPCProtobuf", package: "grpc-swift-protobuf")
  static let grpcTransport = Target.Dependency.product(
    name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport")
  static let swiftProtobuf = Target.Dependency.product(name: "SwiftProtobuf", package: "swift-protobuf")
  static let postgres = Target.Dependency.product(name: "PostgresNIO", package: "postgres-nio")
  static let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
  static let metrics = Target.Dependency.product(name: "Metrics", package: "swift-metrics")
  static let lifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
  static let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")
  static let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
  static let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
}

/// The five gRPC back-end services. Each is a library (`Herald<Name>`, its logic) and a thin
/// executable (`<name>`, from `Services/<Name>/Main`) declared the same way.
let backEnds: [(name: String, folder: String, extra: [Target.Dependency])] = [
  ("campaign", "Campaign", [.grpcTransport, .crypto, .product(name: "Mustache", package: "swift-mustache")]),
  (
    "delivery", "Delivery",
    [
      .grpcTransport, .product(name: "AsyncHTTPClient", package: "async-http-client"), .crypto,
      .product(name: "_CryptoExtras", package: "swift-crypto"), .nioCore, .product(name: "NIOPosix", package: "swift-nio"),
      .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
    ]
  ),
  ("ratelimit", "RateLimit", [.grpcTransport]),
  (
    "sync", "Sync",
    [.product(name: "AsyncHTTPClient", package: "async-http-client"), .nioCore, .product(name: "NIOHTTP1", package: "swift-nio")]
  ),
  (
    "verification", "Verification",
    [
      .grpcTransport, .crypto, .product(name: "AsyncHTTPClient", package: "async-http-client"), .nioCore,
      .product(name: "NIOHTTP1", package: "swift-nio"),
    ]
  ),
]

var targets: [Target] = [
  .target(
    name: "HeraldProtos",
    dependencies: [.grpcCore, .grpcProtobuf, .swiftProtobuf],
    path: "Shared/HeraldProtos",
    swiftSettings: [.swiftLanguageMode(.v6)]
  ),
  .target(
    name: "HeraldCore",
    dependencies: [
      .logging, .metrics,
      .product(name: "Configuration", package: "swift-configuration"),
      .product(name: "Prometheus", package: "swift-prometheus"),
    ],
    path: "Shared/HeraldCore",
    swiftSettings: swiftSettings
  ),
  .target(
    name: "HeraldPostgres",
    dependencies: ["HeraldCore", .postgres, .logging, .crypto, .product(name: "NIOSSL", package: "swift-nio-ssl")],
    path: "Shared/HeraldPostgres",
    swiftSettings: swiftSettings
  ),
  .target(
    name: "HeraldMigrations",
    dependencies: ["HeraldPostgres"],
    path: "Shared/HeraldMigrations",
    swiftSettings: swiftSettings
  ),
  .target(
    name: "HeraldServerKit",
    dependencies: [
      "HeraldCore", "HeraldPostgres", "HeraldProtos",
      .grpcCore, .grpcProtobuf, .grpcTransport, .swiftProtobuf, .postgres, .logging, .metrics,
      .lifecycle, .unixSignals, .nioCore,
      .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "HTTPTypes", package: "swift-http-types"),
      .product(name: "Prometheus", package: "swift-prometheus"),
    ],
    path: "Shared/HeraldServerKit",
    swiftSettings: swiftSettings
  ),
  .target(
    name: "HeraldGateway",
    dependencies: [
      "HeraldCore", "HeraldPostgres", "HeraldMigrations", "HeraldProtos", "HeraldServerKit",
      .grpcCore, .swiftProtobuf, .postgres, .logging, .metrics, .lifecycle, .crypto,
      .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "HTTPTypes", package: "swift-http-types"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .product(name: "AsyncHTTPClient", package: "async-http-client"),
      .product(name: "NIOHTTP1", package: "swift-nio"),
      .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
      .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
      .nioCore, .grpcTransport,
    ],
    path: "Services/Gateway/Library",
    swiftSettings: swiftSettings
  ),
  .executableTarget(
    name: "GatewayMain",
    dependencies: ["HeraldGateway", "HeraldServerKit"],
    path: "Services/Gateway/Main",
    swiftSettings: swiftSettings
  ),
  // The local Airtable-style server: test support, and `crm-sandbox` for the local stack and compose.
  .target(
    name: "CRMSandbox",
    dependencies: [
      "HeraldCore", .logging, .nioCore, .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "HummingbirdCore", package: "hummingbird"), .product(name: "HTTPTypes", package: "swift-http-types"),
    ],
    path: "Tests/CRMSandbox/Library",
    swiftSettings: swiftSettings
  ),
  .executableTarget(
    name: "CRMSandboxMain",
    dependencies: [
      "CRMSandbox", "HeraldCore", .product(name: "AsyncHTTPClient", package: "async-http-client"),
      .product(name: "NIOHTTP1", package: "swift-nio"), .nioCore,
    ],
    path: "Tests/CRMSandbox/Main",
    swiftSettings: swiftSettings
  ),
  // The local APNs, FCM and WhatsApp Cloud API server: test support, and `provider-sandbox` for
  // the local stack.
  .target(
    name: "ProviderSandbox",
    dependencies: [
      "CRMSandbox", .crypto, .product(name: "_CryptoExtras", package: "swift-crypto"), .nioCore,
      .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdHTTP2", package: "hummingbird"),
      .product(name: "HTTPTypes", package: "swift-http-types"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
      .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOHTTP1", package: "swift-nio"),
    ],
    path: "Tests/ProviderSandbox/Library",
    swiftSettings: swiftSettings
  ),
  .executableTarget(
    name: "ProviderSandboxMain",
    dependencies: ["ProviderSandbox", "HeraldCore", .crypto, .product(name: "_CryptoExtras", package: "swift-crypto")],
    path: "Tests/ProviderSandbox/Main",
    swiftSettings: swiftSettings
  ),
  .target(
    name: "HeraldTestSupport",
    dependencies: [
      "HeraldCore", "HeraldPostgres", "HeraldProtos", "HeraldServerKit", "CRMSandbox", "ProviderSandbox", .postgres, .logging,
      .grpcCore, .crypto, .product(name: "_CryptoExtras", package: "swift-crypto"),
      .grpcTransport, .lifecycle, .nioCore, .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "HTTPTypes", package: "swift-http-types"),
    ],
    path: "Tests/HeraldTestSupport",
    swiftSettings: swiftSettings
  ),
  .testTarget(
    name: "SharedTests",
    dependencies: [
      "HeraldCore", "HeraldPostgres", "HeraldMigrations", "HeraldServerKit", "HeraldProtos", "HeraldTestSupport",
      .grpcCore, .grpcTransport, .swiftProtobuf, .postgres, .logging, .lifecycle,
    ],
    path: "Tests/SharedTests",
    swiftSettings: swiftSettings
  ),
  .testTarget(
    name: "ServicesTests",
    dependencies: [
      "HeraldCampaign", "HeraldDelivery", "HeraldRateLimit", "HeraldSync", "HeraldVerification", "HeraldMigrations",
      "CRMSandbox", "ProviderSandbox", "HeraldServerKit", "HeraldProtos", "HeraldTestSupport", "HeraldPostgres", "HeraldCore",
      .grpcCore, .grpcTransport, .swiftProtobuf, .postgres, .logging, .lifecycle,
      .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOHTTP1", package: "swift-nio"),
    ],
    path: "Tests/ServicesTests",
    swiftSettings: swiftSettings
  ),
  .testTarget(
    name: "GatewayTests",
    dependencies: [
      "HeraldGateway", "HeraldCampaign", "HeraldDelivery", "HeraldRateLimit", "HeraldSync", "HeraldVerification", "HeraldServerKit",
      "HeraldProtos",
      "HeraldTestSupport", "CRMSandbox", "HeraldPostgres", "HeraldCore", .grpcCore, .swiftProtobuf, .postgres, .logging, .lifecycle,
      .product(name: "Hummingbird", package: "hummingbird"),
      .product(name: "HummingbirdTesting", package: "hummingbird"),
      .product(name: "HTTPTypes", package: "swift-http-types"),
      .product(name: "Prometheus", package: "swift-prometheus"),
      .nioCore,
    ],
    path: "Tests/GatewayTests",
    swiftSettings: swiftSettings
  ),
]

var products: [Product] = [
  .executable(name: "gateway", targets: ["GatewayMain"]), .executable(name: "crm-sandbox", targets: ["CRMSandboxMain"]),
  .executable(name: "provider-sandbox", targets: ["ProviderSandboxMain"]),
]

for service in backEnds {
  let library = "Herald\(service.folder)"
  targets.append(
    .target(
      name: library,
      dependencies: [
        "HeraldCore", "HeraldPostgres", "HeraldMigrations", "HeraldProtos", "HeraldServerKit",
        .grpcCore, .swiftProtobuf, .postgres, .logging, .metrics, .lifecycle,
      ] + service.extra,
      path: "Services/\(service.folder)/Library",
      swiftSettings: swiftSettings
    ))
  targets.append(
    .executableTarget(
      name: "\(service.folder)Main",
      dependencies: [.byName(name: library), "HeraldServerKit", "HeraldCore"],
      path: "Services/\(service.folder)/Main",
      swiftSettings: swiftSettings
    ))
  products.append(.executable(name: service.name, targets: ["\(service.folder)Main"]))
}

var benchmarkDependencies: [Package.Dependency] = []

// Benchmarks (ordo-one/benchmark) are declared only when HERALD_BENCHMARKS is set — scripts/benchmark
// sets it — so that the normal build, `swift test` and CI never resolve or compile them.
if Context.environment["HERALD_BENCHMARKS"] != nil {
  benchmarkDependencies.append(.package(url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]))
  let gateway: [Target.Dependency] = [
    "HeraldGateway", .product(name: "HummingbirdTesting", package: "hummingbird"), .product(name: "Hummingbird", package: "hummingbird"),
    .product(name: "HTTPTypes", package: "swift-http-types"), .product(name: "Prometheus", package: "swift-prometheus"), .nioCore,
  ]
  for (name, services) in [("CampaignSend", ["HeraldCampaign", "HeraldDelivery"]), ("DeliveryThroughput", ["HeraldDelivery", "HeraldRateLimit"]), ("RateLimitDecisions", ["HeraldRateLimit"]),
    ("SubscriberImport", ["HeraldCampaign"] + gateway),
    ("InboundIntake", ["HeraldCampaign", "HeraldDelivery", .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOHTTP1", package: "swift-nio")] + gateway),
    ("CampaignResults", ["HeraldCampaign"]),
    ("JourneyEnrolments", ["HeraldCampaign", "HeraldDelivery"]),
    ("VerificationFull", ["HeraldCampaign", "HeraldDelivery", "HeraldRateLimit", "HeraldSync", "HeraldVerification", "HeraldMigrations"]),
  ] as [(String, [Target.Dependency])] {
    targets.append(
      .executableTarget(
        name: name,
        dependencies: [
          .product(name: "Benchmark", package: "benchmark"),
          "HeraldCore", "HeraldPostgres", "HeraldProtos", "HeraldServerKit", "HeraldTestSupport",
          .grpcCore, .grpcTransport, .postgres, .logging, .swiftProtobuf,
        ] + services,
        path: "Tests/Benchmarks/\(name)",
        swiftSettings: swiftSettings,
        plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
      ))
  }
}

let package = Package(
  name: "herald",
  platforms: [.macOS(.v15)],
  products: products,
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", exact: "2.9.2"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
    .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
    .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
    .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
    .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
  ] + benchmarkDependencies,
  targets: targets
)
