#!/usr/bin/env bash
# A longer kill -9 soak than the suite runs: ledge is killed at random moments
# while a producer streams events through an external local broker, restarted
# each time, and at the end every event the broker acknowledged must have
# reached upstream, intact and in order (duplicates allowed).
#
#   tests/soak-kill.sh [iterations]     # default 500; the suite runs 50
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
iterations=${1:-500}
echo "kill -9 soak: $iterations iterations"
LEDGE_KILL_ITERATIONS=$iterations cargo test --locked --test it \
    nothing_lost_offline::upstream_sync::kill_9_at_random_moments_never_loses_an_acknowledged_event -- --nocapture
