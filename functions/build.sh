#!/usr/bin/env bash
# Builds the example functions into byte-reproducible wasm modules in
# functions/dist/, or checks that dist/ is up to date.
#
#   functions/build.sh          build, then refresh dist/<name>.wasm, dist/SHA256SUMS, dist/TOOLCHAIN
#   functions/build.sh --check  build into a temporary dir; fail naming each stale file in dist/
#
# The bytes depend only on the sources, Cargo.lock and the compiler (recorded
# in dist/TOOLCHAIN; not pinned by a rust-toolchain.toml, which would make
# rustup download a second copy of the same release): the checkout's path,
# CARGO_HOME and the rustup directory are remapped out of the modules.
# dist/counter.wasm is assembled from wat/counter.wat by the host test suite's
# rules, not here; it is only covered by SHA256SUMS.
set -euo pipefail

readonly FUNCTIONS=(threshold-alert moving-average echo thermostat reading-relay)
readonly TARGET=wasm32-unknown-unknown
# The default 1 MiB guest stack makes every instantiation allocate and zero
# 1 MiB more (docs/abi.md); 64 KiB is plenty for these functions.
readonly STACK_SIZE=65536

usage() {
    echo "usage: functions/build.sh [--check]"
}

mode=build
case "${1-}" in
    "") ;;
    --check) mode=check ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$here"
dist=$here/dist

toolchain=$(rustc --version)
if [[ $mode == check ]]; then
    recorded=$(cat "$dist/TOOLCHAIN" 2>/dev/null || echo "nothing (dist/TOOLCHAIN is missing)")
    if [[ $toolchain != "$recorded" ]]; then
        echo "error: dist/ was built with $recorded, but rustc here is $toolchain." >&2
        echo "The modules are only byte-reproducible with the same compiler: use that release," >&2
        echo "or rebuild dist/ with functions/build.sh and commit it." >&2
        exit 1
    fi
fi

if command -v rustup >/dev/null; then
    installed=$(rustup target list --installed)
    if ! grep -qx "$TARGET" <<<"$installed"; then
        rustup target add "$TARGET"
    fi
fi

# Whatever the environment says about profiles would change the bytes.
for var in "${!CARGO_PROFILE_@}"; do
    unset "$var"
done

cargo_home=${CARGO_HOME:-$HOME/.cargo}
sysroot=$(rustc --print sysroot)
# The last matching prefix wins, so the more specific directories come after
# the repository (CARGO_HOME may live inside a CI checkout).
flags=(
    -C "link-arg=-zstack-size=$STACK_SIZE"
    "--remap-path-prefix=$repo=/ledge"
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$sysroot=/rustc-sysroot"
)
# The encoded form keeps paths with spaces intact, and it overrides RUSTFLAGS
# and any build.rustflags in the user's cargo config.
CARGO_ENCODED_RUSTFLAGS=$(
    IFS=$'\x1f'
    echo "${flags[*]}"
)
export CARGO_ENCODED_RUSTFLAGS

packages=()
for name in "${FUNCTIONS[@]}"; do
    packages+=(-p "$name")
done
cargo build --locked --release --target "$TARGET" --target-dir "$here/target" "${packages[@]}"

if [[ $mode == build ]]; then
    out=$dist
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
for name in "${FUNCTIONS[@]}"; do
    install -m 644 "$here/target/$TARGET/release/${name//-/_}.wasm" "$out/$name.wasm"
done

# sha256sum lines for every module in dist/, sorted by name.
sums() {
    (cd "$dist" && LC_ALL=C sha256sum -- *.wasm | LC_ALL=C sort -k 2)
}

if [[ $mode == build ]]; then
    echo "$toolchain" >"$dist/TOOLCHAIN"
    sums >"$dist/SHA256SUMS"
    echo "dist/ refreshed:"
    for name in "${FUNCTIONS[@]}"; do
        printf '  %-20s %7d bytes\n' "$name.wasm" "$(wc -c <"$dist/$name.wasm")"
    done
    cat "$dist/SHA256SUMS"
    exit 0
fi

stale=()
for name in "${FUNCTIONS[@]}"; do
    built=$(sha256sum <"$out/$name.wasm")
    if [[ ! -f $dist/$name.wasm ]]; then
        stale+=("functions/dist/$name.wasm (missing)")
    elif [[ $built != "$(sha256sum <"$dist/$name.wasm")" ]]; then
        stale+=("functions/dist/$name.wasm (sha256 ${built%% *} when built now)")
    fi
done
if [[ ${#stale[@]} -eq 0 ]]; then
    # Names whose line differs between the modules in dist/ and SHA256SUMS.
    differ=$(diff <(sums) "$dist/SHA256SUMS" 2>/dev/null | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u | paste -sd ' ' || true)
    if [[ -n $differ || ! -f $dist/SHA256SUMS ]]; then
        stale+=("functions/dist/SHA256SUMS (out of date for: ${differ:-all modules})")
    fi
fi
if [[ ${#stale[@]} -gt 0 ]]; then
    echo "error: functions/dist/ is stale:" >&2
    printf '  %s\n' "${stale[@]}" >&2
    echo "Refresh it with functions/build.sh and commit the result." >&2
    exit 1
fi
echo "functions/dist/ is up to date ($toolchain)."
