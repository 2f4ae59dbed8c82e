#!/usr/bin/env bash
# Measures the release-profile trade-off recorded in BENCHMARKS.md ("Cross
# builds and the release profile"): for each candidate profile, the stripped
# static aarch64-musl binary's size, its cold build time (cross/build.sh),
# and what it costs at start-up: the wall time of one `ledge invoke` of the
# quickstart's threshold-alert under qemu-aarch64-static (start-up, config,
# module load and compile, one call), mean of 20 runs per round.
#
# Run time of functions is not compared: the wasmi crates are pinned at
# opt-level 3 in every profile (Cargo.toml), so the interpreter's hot path
# is the same code in all of them.
#
#   cross/profiles.sh                    # every profile: 15-25 min each here
#   cross/profiles.sh current o3         # some of them
#   PROFILE_ROUNDS=5 cross/profiles.sh   # more measuring rounds (default 3)
#
# Profiles are cargo's CARGO_PROFILE_RELEASE_* overrides of Cargo.toml's
# [profile.release]. Every profile builds cold in its own
# target/profile-<name>/, so nothing else's builds are disturbed; everything
# is built before anything is measured, and the measuring rounds alternate
# between profiles so a change of machine load hits them all alike.
# Results: target/profile-results/.
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
    local name=$1 target=aarch64-unknown-linux-musl output started
    started=$(date +%s)
    output=$(with_profile "$name" CARGO_TARGET_DIR="$repo/target/profile-$name/$target" \
        cross/build.sh "$target")
    record "$name" "build_s" "$(($(date +%s) - started))"
    record "$name" "size" "$(awk '/^size/ {print $2}' <<<"$output")"
    cp "$(awk '/^binary/ {print $2}' <<<"$output")" "$out/ledge-$name"
}

# Mean wall time of `ledge invoke`, in ms, over 20 runs.
invoke_ms() {
    local binary=$1 i started total=0
    for i in $(seq 20); do
        started=$(date +%s%N)
        qemu-aarch64-static "$binary" invoke threshold-alert --config examples/quickstart/ledge.toml \
            --event '{"value":31.5,"sensor":"t7"}' >/dev/null
        total=$((total + $(date +%s%N) - started))
    done
    awk -v t="$total" -v i="$i" 'BEGIN {printf "%.2f", t / i / 1e6}'
}

measure() {
    local name=$1 round=$2
    record "$name" "invoke_qemu_ms_r$round" "$(invoke_ms "$out/ledge-$name")"
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
