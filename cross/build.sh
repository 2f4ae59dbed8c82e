#!/usr/bin/env bash
# Builds a static, stripped ledge for a gateway.
#
#   cross/build.sh aarch64-unknown-linux-musl    # Pi 3/4/5, CM4, Zero 2 W (64-bit OS)
#   cross/build.sh rpi4                           # a board name from boards/*.toml
#   cross/build.sh x86_64-unknown-linux-musl      # for tests on this machine
#
# Installs what it needs if missing (the rustup target; zig and
# cargo-zigbuild from PyPI, because ring, the TLS crypto, compiles C and zig
# is a C cross compiler for every target), builds with the release profile
# (size-tuned: opt-level z, fat LTO, panic=abort, strip), and prints the
# binary's path, size and sha256. Paths of this checkout and of
# CARGO_HOME are remapped out of the binary so two builds of one commit from
# different folders give the same bytes.
#
# Environment: CARGO_TARGET_DIR (default: target/), LEDGE_FEATURES (cargo
# features, default: the crate's defaults), LEDGE_NO_DEFAULT_FEATURES=1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

usage() {
    echo "usage: cross/build.sh <target-triple | board>"
    echo "targets: aarch64-unknown-linux-musl, x86_64-unknown-linux-musl"
    local boards=() board
    for board in "$repo"/boards/*.toml; do
        boards+=("$(basename "$board" .toml)")
    done
    echo "boards:  ${boards[*]}"
}

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    usage >&2
    exit 2
fi

target=$1
if [[ -f $repo/boards/$1.toml ]]; then
    target=$(sed -n 's/^target *= *"\(.*\)"/\1/p' "$repo/boards/$1.toml")
    echo "board $1 -> $target" >&2
fi

case $target in
    aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) ;;
    *)
        echo "error: unsupported target '$target'" >&2
        usage >&2
        exit 2
        ;;
esac

if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    echo "installing rustup target $target" >&2
    rustup target add "$target" >&2
fi
if ! command -v cargo-zigbuild >/dev/null || ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "installing zig and cargo-zigbuild from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check ziglang cargo-zigbuild >&2
fi

cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustflags="--remap-path-prefix=$repo=/ledge --remap-path-prefix=$cargo_home=/cargo -C target-feature=+crt-static"
features=()
if [[ ${LEDGE_NO_DEFAULT_FEATURES:-} == 1 ]]; then
    features+=(--no-default-features)
fi
if [[ -n ${LEDGE_FEATURES:-} ]]; then
    features+=(--features "$LEDGE_FEATURES")
fi

cd "$repo"
RUSTFLAGS="$rustflags" cargo zigbuild --locked --release --target "$target" "${features[@]}" >&2

target_dir=${CARGO_TARGET_DIR:-$repo/target}
binary=$target_dir/$target/release/ledge
size=$(stat -c %s "$binary")
sha=$(sha256sum "$binary" | cut -d' ' -f1)
echo "binary  $binary"
echo "size    $size bytes ($((size / 1024)) KiB)"
echo "sha256  $sha"
