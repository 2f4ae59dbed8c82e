#!/usr/bin/env bash
# Runs every ledge benchmark in one go and prints one results table, so that
# every ratio in it compares figures measured in the same run on the same
# machine. See BENCHMARKS.md for the method and the last recorded results.
#
#   benches/run.sh                 # everything (about 10 minutes once built)
#   benches/run.sh --no-cross      # skip the four static cross builds
#   benches/run.sh --repeats 1     # one repeat of the repeated measurements
#
# Builds first (nothing is measured while cargo runs): the benches
# (`cargo bench --no-run`), `cargo build --release` (the measured binary is
# copied out of target/release, which the bench build also writes), and the
# stripped static binaries through cross/build.sh with and without the
# embedded broker (CARGO_TARGET_DIR=target/bench-cross). Then it measures:
# benches/invoke.rs (warm invocation, instantiation) and benches/mqtt_load.rs
# (brokers, the relay baseline, ledge end to end, latency, CPU, memory).
#
# Everything listens on 127.0.0.1 only; mosquitto, ledge and the relay are
# started on free ports and stopped by the bench. Output, the raw results
# (TSV) and the log go to target/bench-results/ (BENCH_OUT overrides).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cd "$repo"

cross=1
repeats=3
while [[ $# -gt 0 ]]; do
    case $1 in
        --no-cross) cross=0 ;;
        --repeats)
            repeats=${2:?--repeats needs a number}
            shift
            ;;
        -h | --help)
            sed -n '2,20p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            echo "benches/run.sh: unknown argument $1 (try --help)" >&2
            exit 2
            ;;
    esac
    shift
done

out=${BENCH_OUT:-$repo/target/bench-results}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$out"
results=$out/results-$stamp.tsv
log=$out/run-$stamp.log
: >"$results"
exec > >(tee "$log") 2>&1
started=$(date +%s)

section() {
    echo
    echo "== $* ($(($(date +%s) - started)) s)"
}

machine() {
    echo "date     $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit   $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cpus     $(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "memory   $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel   $(uname -sr)"
    echo "rustc    $(rustc --version)"
    echo "broker   $({ /usr/sbin/mosquitto -h 2>/dev/null || true; } | head -1)"
    echo "load     $(cut -d' ' -f1-3 /proc/loadavg) (1/5/15 min, before the run)"
}

# The executable cargo built for bench target $1, from cargo's JSON messages.
bench_executable() {
    grep "\"name\":\"$1\"" | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4
}

# One cross build; records its stripped size as a result line, or "-" and
# the reason if the build fails (the run goes on: the other figures stand).
cross_build() {
    local target=$1 no_default=$2 key=$3 output size mib
    local what="stripped static $target"
    if [[ $no_default == 1 ]]; then
        what+=", --no-default-features (no embedded broker)"
    else
        what+=", default features (embedded broker)"
    fi
    if ! output=$(LEDGE_NO_DEFAULT_FEATURES=$no_default CARGO_TARGET_DIR=$repo/target/bench-cross \
        cross/build.sh "$target"); then
        echo "cross build FAILED: $what"
        printf 'result\t%s\t-\t-\t-\tMiB\t%s: BUILD FAILED (see the log)\n' "$key" "$what" >>"$results"
        return 0
    fi
    echo "$output"
    size=$(awk '/^size/ {print $2}' <<<"$output")
    mib=$(awk -v s="$size" 'BEGIN {printf "%.3f", s / 1048576}')
    printf 'result\t%s\t%s\t%s\t%s\tMiB\t%s (%s bytes)\n' "$key" "$mib" "$mib" "$mib" \
        "$what" "$size" >>"$results"
}

section "machine"
machine

section "building the benches (bench profile = release settings)"
bench_json=$(cargo bench --no-run --bench invoke --bench mqtt_load --message-format=json)
invoke_bin=$(bench_executable invoke <<<"$bench_json")
mqtt_bin=$(bench_executable mqtt_load <<<"$bench_json")
echo "invoke    $invoke_bin"
echo "mqtt_load $mqtt_bin"

section "building target/release/ledge"
cargo build --release
ledge_bin=$out/ledge
cp target/release/ledge "$ledge_bin"
echo "measuring $ledge_bin ($(stat -c %s "$ledge_bin") bytes, $(file -b "$ledge_bin" | cut -d, -f1-2))"

if [[ $cross == 1 ]]; then
    section "cross builds (cross/build.sh, CARGO_TARGET_DIR=target/bench-cross)"
    cross_build x86_64-unknown-linux-musl 0 size_x86_64_musl
    cross_build x86_64-unknown-linux-musl 1 size_x86_64_musl_no_broker
    cross_build aarch64-unknown-linux-musl 0 size_aarch64_musl
    cross_build aarch64-unknown-linux-musl 1 size_aarch64_musl_no_broker
fi

section "benches/invoke.rs: warm invocation and instantiation"
"$invoke_bin" --bench | tee -a "$results.raw"

section "benches/mqtt_load.rs: brokers, relay, ledge end to end, latency, CPU, memory"
"$mqtt_bin" all --ledge "$ledge_bin" --repeats "$repeats" | tee -a "$results.raw"

grep '^result' "$results.raw" >>"$results"
rm -f "$results.raw"

section "results (median, min, max over repeats; all from this run)"
awk -F'\t' '{printf "%-42s %12s %12s %12s  %-7s %s\n", $2, $3, $4, $5, $6, $7}' \
    <(printf 'result\tkey\tmedian\tmin\tmax\tunit\twhat\n'; cat "$results")

# The value (median) of result $1, or nothing.
value() {
    awk -F'\t' -v k="$1" '$2 == k {print $3}' "$results"
}

# floor NAME KEY OP LIMIT UNIT: prints whether the median of KEY meets it.
floor() {
    local name=$1 key=$2 op=$3 limit=$4 unit=$5 got verdict
    got=$(value "$key")
    if [[ ! $got =~ ^[0-9.]+$ ]]; then
        verdict="not measured"
    elif awk -v g="$got" -v l="$limit" -v op="$op" \
        'BEGIN {exit !((op == "<=" && g <= l) || (op == ">=" && g >= l))}'; then
        verdict="met"
    else
        verdict="NOT MET"
    fi
    printf '%-48s %-8s %s %s %-8s %s\n' "$name" "${got:-?}" "$op" "$limit" "$unit" "$verdict"
}

section "floors"
floor "end to end / relay zero-loss throughput" ratio_ledge_relay ">=" 0.70 x
floor "p99 at 1000 msg/s, ledge, stock mosquitto" lat_stock_ledge_p99 "<=" 2 ms
floor "p99 at 1000 msg/s, ledge, nodelay mosquitto" lat_nodelay_ledge_p99 "<=" 2 ms
floor "p99 at 1000 msg/s, ledge, embedded broker" lat_embedded_ledge_p99 "<=" 2 ms
floor "trivial warm invocation" invoke_trivial_us "<=" 5 us
floor "idle RSS (quickstart, embedded broker)" rss_idle "<=" 10 MiB
floor "aarch64 stripped static binary" size_aarch64_musl "<=" 5 MiB

echo
echo "raw results: $results"
echo "full log:    $log"
echo "total time:  $(($(date +%s) - started)) s"
