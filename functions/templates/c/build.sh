#!/usr/bin/env bash
# Builds {{name}}.wasm with clang and wasm-ld (Debian: apt-get install clang lld).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# -nostdlib: no libc, so no WASI imports; -mbulk-memory: copies become
# memory.copy, not calls to a memcpy there is none of; --no-entry: a
# library, not a program; 64 KiB of stack keeps instantiation cheap.
"${CC:-clang}" --target=wasm32 -nostdlib -O2 -mbulk-memory \
    -Wl,--no-entry -Wl,-z,stack-size=65536 -Wl,--strip-debug \
    -o "$here/{{name}}.wasm" "$here/{{name}}.c"
echo "built $here/{{name}}.wasm"
