// swift-tools-version:6.1
// Builds the protoc plugins that scripts/generate-protos.sh uses. Not part of the normal build.
// protoc-gen-swift and protoc-gen-grpc-swift-2 come from their packages; protoc-gen-herald-rest
// (the gateway's REST routes and OpenAPI document, from the google.api.http bindings) is here.
import PackageDescription

let package = Package(
  name: "protoc-plugins",
  dependencies: [
    .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
    .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
  ],
  targets: [
    .executableTarget(
      name: "protoc-gen-herald-rest",
      dependencies: [
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        .product(name: "SwiftProtobufPluginLibrary", package: "swift-protobuf"),
      ],
      path: "Sources/protoc-gen-herald-rest",
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
  ]
)
