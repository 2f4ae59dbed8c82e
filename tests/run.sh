#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (Debian packages, rustup targets), checks formatting and lints, then runs
# every test. This is the README's test command and what CI runs.
#
#   tests/run.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

step "system packages"
packages=()
command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || packages+=(mosquitto)
command -v mosquitto_pub >/dev/null || packages+=(mosquitto-clients)
command -v promtool >/dev/null || packages+=(prometheus)  # promtool checks the metrics endpoint
command -v qemu-aarch64-static >/dev/null || packages+=(qemu-user-static)
command -v shellcheck >/dev/null || packages+=(shellcheck)
[[ -x /usr/sbin/sshd ]] || packages+=(openssh-server)
command -v ssh >/dev/null || packages+=(openssh-client)
[[ -f /usr/share/zoneinfo/Europe/Berlin ]] || packages+=(tzdata)
command -v clang >/dev/null || packages+=(clang)   # C functions (tests/it/languages)
command -v wasm-ld >/dev/null || packages+=(lld)   # their linker
command -v npm >/dev/null || packages+=(npm)       # assemblyscript, below
command -v curl >/dev/null || packages+=(curl)     # the HTTP server (tests/it/http)
python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)  # awscli and boto3, below
if [[ ${#packages[@]} -gt 0 ]]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
echo "ok: mosquitto, mosquitto-clients, prometheus (promtool), qemu-user-static, shellcheck, openssh-server, openssh-client, tzdata, clang, lld, npm, curl, python3-venv"

step "awscli and boto3 (Lambda's Invoke API, tests/it/http)"
# Into a venv in target/ (a cache, like assemblyscript below); the tests
# find `aws` and `python3` on PATH.
if ! target/venv/bin/python3 -c 'import boto3' 2>/dev/null || [[ ! -x target/venv/bin/aws ]]; then
    python3 -m venv target/venv
    target/venv/bin/pip install --quiet --disable-pip-version-check awscli boto3
fi
export PATH="$repo/target/venv/bin:$PATH"
echo "ok: $(aws --version 2>&1), boto3 $(python3 -c 'import boto3; print(boto3.__version__)')"

step "assemblyscript (AssemblyScript functions, tests/it/languages)"
# Pinned, into target/ (a cache: installed once per checkout).
assemblyscript=assemblyscript@0.28.20
if [[ ! -x target/npm/node_modules/.bin/asc ]] || ! grep -q '"version": "0.28.20"' target/npm/node_modules/assemblyscript/package.json; then
    mkdir -p target/npm
    npm install --no-save --no-audit --no-fund --prefix target/npm "$assemblyscript"
fi
echo "ok: $(target/npm/node_modules/.bin/asc --version)"

step "rust targets and components"
installed=$(rustup target list --installed)
for target in wasm32-unknown-unknown aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src  # byte-reproducible functions/dist (build.sh --check)

step "format, lints, shell scripts"
cargo fmt --all -- --check
(cd functions && cargo fmt --all -- --check)
cargo clippy --locked --all-targets -- -D warnings
(cd functions && cargo clippy --locked --all-targets -- -D warnings)
shellcheck tests/run.sh tests/soak-kill.sh cross/build.sh cross/profiles.sh functions/build.sh .ci/run flash.sh tests/flash.sh \
    functions/shout-c/build.sh functions/running-mean-as/build.sh functions/templates/*/build.sh

step "guest SDK and example function tests (host-side)"
(cd functions && cargo test --locked --quiet)

step "ledge tests (unit, runtime, CLI, end-to-end over MQTT: tests/it)"
cargo test --locked -- --test-threads "${LEDGE_TEST_THREADS:-2}"

step "aarch64 cross build under qemu (tests/cross_aarch64.rs, left out of plain cargo test)"
cargo test --locked --test cross_aarch64 -- --test-threads "${LEDGE_TEST_THREADS:-2}"

step "flash.sh and the systemd unit"
tests/flash.sh

step "all tests passed"
