#!/usr/bin/env bash
# Builds {{name}}.wasm (cargo test runs the handler's tests on this machine).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
target=wasm32-unknown-unknown
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi
cargo build --release --target "$target"
cp "${CARGO_TARGET_DIR:-target}/$target/release/{{crate}}.wasm" "{{name}}.wasm"
echo "built $here/{{name}}.wasm"
