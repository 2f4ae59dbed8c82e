#!/usr/bin/env bash
# Builds a static, stripped ledge for a gateway.
#
#   cross/build.sh aarch64-unknown-linux-musl      # Pi 3/4/5, CM4, Zero 2 W (64-bit OS)
#   cross/build.sh armv7-unknown-linux-musleabihf  # Pi 2/3/4/5 on a 32-bit OS
#   cross/build.sh arm-unknown-linux-musleabihf    # Pi Zero / Zero W / Pi 1 (ARMv6)
#   cross/build.sh rpi4                            # a board name from boards/*.toml
#   cross/build.sh x86_64-unknown-linux-musl       # for tests on this machine
#
# Installs what it needs if missing (the rustup target, or rust-src for the
# targets whose std is built from source; zig and cargo-zigbuild from PyPI,
# because ring, the TLS crypto, compiles C and zig is a C cross compiler and
# musl linker for every target), builds with the release profile
# (size-tuned: opt-level z, fat LTO, panic=abort, strip; see BENCHMARKS.md
# for the measured alternatives), and prints the binary's path, size and
# sha256 on stdout:
#
#   binary  <path>
#   size    <bytes> bytes (<KiB> KiB)
#   sha256  <hex>
#
# The paths of this checkout, of CARGO_HOME, of the target directory and of
# the Rust sources are remapped out of the binary, so two builds of one
# commit from different folders give the same bytes (tests/cross_aarch64.rs
# checks it).
#
# Environment: CARGO_TARGET_DIR (default: target/), LEDGE_FEATURES (cargo
# features, default: the crate's defaults), LEDGE_NO_DEFAULT_FEATURES=1, and
# cargo's own CARGO_PROFILE_RELEASE_* overrides.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")

# How each target gets its standard library: `prebuilt` from rustup, or
# `source`: built by cargo (-Zbuild-std) from the rust-src component.
std_of() {
    case $1 in
        aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) echo prebuilt ;;
        armv7-unknown-linux-musleabihf | arm-unknown-linux-musleabihf) echo source ;;
        *) return 1 ;;
    esac
}

usage() {
    echo "usage: cross/build.sh <target-triple | board>"
    echo "targets: aarch64-unknown-linux-musl, armv7-unknown-linux-musleabihf,"
    echo "         arm-unknown-linux-musleabihf, x86_64-unknown-linux-musl"
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

if ! std=$(std_of "$target"); then
    echo "error: unsupported target '$target'" >&2
    usage >&2
    exit 2
fi

if [[ $std == prebuilt ]]; then
    if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
        echo "installing rustup target $target" >&2
        rustup target add "$target" >&2
    fi
elif command -v rustup >/dev/null && ! rustup component list --installed | grep -q '^rust-src'; then
    echo "installing rust-src (std for $target is built from source)" >&2
    rustup component add rust-src >&2
fi
if ! command -v cargo-zigbuild >/dev/null || ! python3 -c 'import ziglang' 2>/dev/null; then
    echo "installing zig and cargo-zigbuild from PyPI" >&2
    python3 -m pip install --quiet --disable-pip-version-check ziglang cargo-zigbuild >&2
fi

# Absolute, so the remapping below and the printed path do not depend on
# the directory this script was started from.
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
export CARGO_TARGET_DIR=$target_dir
cargo_home=$(realpath -m "${CARGO_HOME:-$HOME/.cargo}")

# Later prefixes win where two match (a target directory inside the
# checkout becomes /target, not /ledge/target). std's sources become
# /rustc/<commit>, the path rustup's prebuilt std carries: without this,
# once rust-src is installed rustc writes its local path (with RUSTUP_HOME
# and the toolchain's name) for std code inlined into ledge, and when std
# is built from source that path is all it has.
sysroot=$(rustc --print sysroot)
if [[ "$repo$target_dir$cargo_home$sysroot" == *[[:space:]]* ]]; then
    echo "error: a path contains whitespace, which RUSTFLAGS cannot carry:" >&2
    printf '  %s\n' "$repo" "$target_dir" "$cargo_home" "$sysroot" >&2
    exit 2
fi
commit=$(rustc -vV | sed -n 's/^commit-hash: //p')
rustflags=(
    "--remap-path-prefix=$repo=/ledge"
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$target_dir=/target"
    "--remap-path-prefix=$sysroot/lib/rustlib/src/rust=/rustc/$commit"
    -C target-feature=+crt-static
)
build_std=()
if [[ $std == source ]]; then
    # rustc's own musl start files and libc.a ship in the rust-std
    # component, which a std built from source goes without: zig links
    # its musl instead, built for the target's CPU.
    rustflags+=(-C link-self-contained=no)
    build_std=("-Zbuild-std=std,panic_abort")
    export RUSTC_BOOTSTRAP=1
fi

features=()
if [[ ${LEDGE_NO_DEFAULT_FEATURES:-} == 1 ]]; then
    features+=(--no-default-features)
fi
if [[ -n ${LEDGE_FEATURES:-} ]]; then
    features+=(--features "$LEDGE_FEATURES")
fi

cd "$repo"
started=$(date +%s)
RUSTFLAGS="${rustflags[*]}" cargo zigbuild --locked --release --target "$target" \
    "${build_std[@]}" "${features[@]}" >&2
echo "built $target in $(($(date +%s) - started)) s" >&2

binary=$target_dir/$target/release/ledge
size=$(stat -c %s "$binary")
sha=$(sha256sum "$binary" | cut -d' ' -f1)
echo "binary  $binary"
echo "size    $size bytes ($((size / 1024)) KiB)"
echo "sha256  $sha"
