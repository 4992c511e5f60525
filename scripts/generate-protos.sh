#!/usr/bin/env bash
# Regenerates the code made from Protos/:
#   Shared/HeraldProtos                       messages and gRPC services (protoc-gen-swift,
#                                             protoc-gen-grpc-swift-2)
#   Services/Gateway/Library/Generated        the gateway's REST route table and OpenAPI document
#                                             (protoc-gen-herald-rest, from the google.api.http
#                                             bindings, Herald's REST annotations and
#                                             Protos/openapi-extra.json)
#   scripts/protoc-plugins/Sources/protoc-gen-herald-rest/Generated
#                                             the annotation protos, as that plugin reads them
# The plugins are built (once, release) from the pinned packages in scripts/protoc-plugins;
# protoc comes from Debian's protobuf-compiler.
#   scripts/generate-protos.sh          regenerate in place
#   scripts/generate-protos.sh --check  regenerate into a temporary folder and fail on any diff
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"
mode=${1:-}

ensure_apt_packages protobuf-compiler
# Well-known types (timestamp.proto) ship with protoc's include folder.
include=$(dirname "$(command -v protoc)")/../include
[ -f "$include/google/protobuf/timestamp.proto" ] || include=/usr/include

plugins="$root/scripts/protoc-plugins"
bin="$plugins/.build/release"
for plugin in protoc-gen-swift protoc-gen-grpc-swift-2 protoc-gen-herald-rest; do
  if [ ! -x "$bin/$plugin" ] || [ "$plugin" = protoc-gen-herald-rest ]; then
    echo "building $plugin (release; the first time takes several minutes)" >&2
    swift build --package-path "$plugins" -c release --product "$plugin" >&2
  fi
done

# name → folder it goes to
declare -A outputs=(
  [protos]="$root/Shared/HeraldProtos"
  [rest]="$root/Services/Gateway/Library/Generated"
  [annotations]="$plugins/Sources/protoc-gen-herald-rest/Generated"
)
declare -A targets
# Generated into temporary folders first: a proto protoc refuses leaves the committed code (and the
# plugin's own sources, which the next run builds from) as they were.
for name in "${!outputs[@]}"; do
  targets[$name]=$(mktemp -d)
done

cd "$root/Protos"
protos=$(find . -name '*.proto' | sed 's|^\./||' | sort)
# shellcheck disable=SC2086
protoc -I . -I "$include" \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="${targets[protos]}" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out="${targets[protos]}" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
  $protos
# shellcheck disable=SC2086
protoc -I . -I "$include" \
  --plugin=protoc-gen-herald-rest="$bin/protoc-gen-herald-rest" \
  --herald-rest_out=extra=openapi-extra.json,message=herald.campaign.v1.ImportSubscribersResponse,message=herald.delivery.v1.IngestProviderWebhookResponse:"${targets[rest]}" \
  $protos
protoc -I . -I "$include" \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --swift_out="${targets[annotations]}" --swift_opt=Visibility=Internal,FileNaming=PathToUnderscores \
  google/api/http.proto google/api/annotations.proto herald/api/v1/annotations.proto

if [ "$mode" = "--check" ]; then
  failed=0
  for name in "${!outputs[@]}"; do
    if ! diff -ru "${outputs[$name]}" "${targets[$name]}"; then failed=1; fi
    rm -rf "${targets[$name]}"
  done
  if [ $failed -ne 0 ]; then
    echo "generated code is out of date: run scripts/generate-protos.sh and commit" >&2
    exit 1
  fi
  echo "generated code matches Protos/"
else
  for name in "${!outputs[@]}"; do
    mkdir -p "${outputs[$name]}"
    find "${outputs[$name]}" -name '*.swift' -delete
    cp "${targets[$name]}"/*.swift "${outputs[$name]}/"
    rm -rf "${targets[$name]}"
  done
fi
