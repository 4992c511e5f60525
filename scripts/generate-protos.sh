#!/usr/bin/env bash
# Regenerates Shared/HeraldProtos from Protos/ with protoc, protoc-gen-swift and
# protoc-gen-grpc-swift-2. The plugins are built (once, release) from the pinned packages in
# scripts/protoc-plugins; protoc comes from Debian's protobuf-compiler.
#   scripts/generate-protos.sh          regenerate in place
#   scripts/generate-protos.sh --check  regenerate into a temporary folder and fail on any diff
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/Shared/HeraldProtos"
mode=${1:-}

if ! command -v protoc >/dev/null; then
  echo "protoc not found: installing Debian's protobuf-compiler" >&2
  apt-get update -qq && apt-get install -y -qq protobuf-compiler >/dev/null
fi
# Well-known types (timestamp.proto) ship with protoc's include folder.
include=$(dirname "$(command -v protoc)")/../include
[ -f "$include/google/protobuf/timestamp.proto" ] || include=/usr/include

plugins="$root/scripts/protoc-plugins"
bin="$plugins/.build/release"
if [ ! -x "$bin/protoc-gen-swift" ] || [ ! -x "$bin/protoc-gen-grpc-swift-2" ]; then
  echo "building protoc plugins (one-time, several minutes)" >&2
  swift build --package-path "$plugins" -c release --product protoc-gen-swift
  swift build --package-path "$plugins" -c release --product protoc-gen-grpc-swift-2
fi

target="$out"
if [ "$mode" = "--check" ]; then target=$(mktemp -d); fi
find "$target" -name '*.swift' -delete 2>/dev/null || true
mkdir -p "$target"

cd "$root/Protos"
protos=$(find . -name '*.proto' | sed 's|^\./||' | sort)
# shellcheck disable=SC2086
protoc -I . -I "$include" \
  --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
  --swift_out="$target" --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out="$target" \
  --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,FileNaming=PathToUnderscores \
  $protos

if [ "$mode" = "--check" ]; then
  if ! diff -ru "$out" "$target"; then
    echo "Shared/HeraldProtos is out of date: run scripts/generate-protos.sh and commit" >&2
    exit 1
  fi
  echo "generated code matches Protos/"
fi
