#!/usr/bin/env bash
# Measures the release-profile trade-off recorded in BENCHMARKS.md ("Cross
# builds and the release profile"): for each candidate profile, the stripped
# static size for aarch64-musl and x86_64-musl and their cold build times
# (cross/build.sh), and for x86_64-musl what it costs at run time:
#
#   - warm invocation and instantiation (benches/invoke.rs built with the
#     profile; cargo builds benches with panic=unwind whatever the profile
#     says, so this figure cannot tell panic=abort from unwind), and
#   - the wall time of one `ledge invoke` of the quickstart's threshold-alert
#     (start-up, config, module load, one call), mean of 20 runs.
#
#   cross/profiles.sh                    # every profile: about 15 min each here
#   cross/profiles.sh current s          # some of them
#   PROFILE_ROUNDS=5 cross/profiles.sh   # more measuring rounds (default 3)
#
# Profiles are cargo's CARGO_PROFILE_RELEASE_* overrides of Cargo.toml's
# [profile.release] (the wasmi crates stay at opt-level 3 in every one).
# Every profile builds cold in its own target/profile-<name>/, so nothing
# else's builds are disturbed; everything is built before anything is
# measured, and the measuring rounds alternate between profiles so a change
# of machine load hits them all alike. Results: target/profile-results/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname "$here")
cd "$repo"

# name -> the overrides (VAR=value ...) it runs with.
declare -A overrides=(
    [current]=""
    [s]="CARGO_PROFILE_RELEASE_OPT_LEVEL=s"
    [o3]="CARGO_PROFILE_RELEASE_OPT_LEVEL=3"
    [thin]="CARGO_PROFILE_RELEASE_LTO=thin"
    [nolto]="CARGO_PROFILE_RELEASE_LTO=false"
    [unwind]="CARGO_PROFILE_RELEASE_PANIC=unwind"
)
order=(current s o3 thin nolto unwind)
if [[ $# -gt 0 ]]; then
    order=("$@")
fi
for name in "${order[@]}"; do
    [[ -v "overrides[$name]" ]] || {
        echo "unknown profile $name (known: ${!overrides[*]})" >&2
        exit 2
    }
done
rounds=${PROFILE_ROUNDS:-3}
out=$repo/target/profile-results
mkdir -p "$out"
results=$out/results.tsv
printf 'profile\tkey\tvalue\n' >"$results"

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" | tee -a "$results"; }

# `env` with the profile's overrides.
with_profile() {
    local name=$1
    shift
    # shellcheck disable=SC2086 # the overrides are words on purpose
    env ${overrides[$name]} "$@"
}

build() {
    local name=$1 target output started
    for target in aarch64-unknown-linux-musl x86_64-unknown-linux-musl; do
        started=$(date +%s)
        output=$(with_profile "$name" CARGO_TARGET_DIR="$repo/target/profile-$name/$target" \
            cross/build.sh "$target")
        record "$name" "build_s_$target" "$(($(date +%s) - started))"
        record "$name" "size_$target" "$(awk '/^size/ {print $2}' <<<"$output")"
        cp "$(awk '/^binary/ {print $2}' <<<"$output")" "$out/ledge-$name-$target"
    done
    # The invoke bench, as a static x86_64-musl program like the binary
    # above (zig links it; its C is compiled by zig like the binary's).
    local dir=$repo/target/profile-$name/bench json
    started=$(date +%s)
    json=$(with_profile "$name" CARGO_TARGET_DIR="$dir" RUSTFLAGS="-C target-feature=+crt-static" \
        cargo zigbuild --locked --release --target x86_64-unknown-linux-musl \
        --bench invoke --message-format=json)
    record "$name" "build_s_bench" "$(($(date +%s) - started))"
    grep '"name":"invoke"' <<<"$json" | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4 \
        | xargs -I{} cp {} "$out/invoke-$name"
}

# Mean wall time of `ledge invoke`, in ms, over 20 runs.
invoke_ms() {
    local binary=$1 i started total=0
    for i in $(seq 20); do
        started=$(date +%s%N)
        "$binary" invoke threshold-alert --config examples/quickstart/ledge.toml \
            --event '{"value":31.5,"sensor":"t7"}' >/dev/null
        total=$((total + $(date +%s%N) - started))
    done
    awk -v t="$total" -v i="$i" 'BEGIN {printf "%.2f", t / i / 1e6}'
}

measure() {
    local name=$1 round=$2 key median
    record "$name" "invoke_cli_ms_r$round" "$(invoke_ms "$out/ledge-$name-x86_64-unknown-linux-musl")"
    while IFS=$'\t' read -r _ key median _; do
        record "$name" "${key}_r$round" "$median"
    done < <("$out/invoke-$name" --bench | grep '^result')
}

echo "machine: $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
    "$(rustc --version), $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$out/machine.txt"
for name in "${order[@]}"; do
    echo "== building $name (${overrides[$name]:-Cargo.toml as is})" >&2
    build "$name"
done
for round in $(seq "$rounds"); do
    echo "== measuring, round $round of $rounds (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    for name in "${order[@]}"; do
        measure "$name" "$round"
    done
done
echo "results in $results" >&2
