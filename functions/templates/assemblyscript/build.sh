#!/usr/bin/env bash
# Builds {{name}}.wasm with AssemblyScript (run `npm install` here first,
# or point $ASC at an asc binary).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
asc=${ASC:-$here/node_modules/.bin/asc}
# --runtime incremental: a heap that frees, for a warm instance; ledge
# provides env.abort (and env.seed) itself, so no --use abort=... is needed.
"$asc" "$here/assembly/index.ts" --runtime incremental -O3s --noColors \
    --outFile "$here/{{name}}.wasm"
echo "built $here/{{name}}.wasm"
