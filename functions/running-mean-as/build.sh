#!/usr/bin/env bash
# Builds assembly/index.ts into a ledge function (default: running-mean-as.wasm
# beside it). Needs assemblyscript from npm: $ASC, or `asc` on the PATH, or
# `npx asc` in a folder where it is installed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/running-mean-as.wasm}
asc=${ASC:-asc}
# --runtime incremental: a real heap, so ledge_handle can free each payload
# in a warm instance; -O3s: small and fast; no --use abort=...: ledge
# provides env.abort (and env.seed for Math.random) itself.
"$asc" "$here/assembly/index.ts" --runtime incremental -O3s --noColors \
    --outFile "$out"
