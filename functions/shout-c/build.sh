#!/usr/bin/env bash
# Builds shout.c into a ledge function (default: shout-c.wasm beside it).
# Needs clang and wasm-ld (Debian: apt-get install clang lld).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=${1:-$here/shout-c.wasm}
# -nostdlib: no libc (and so no WASI imports); -mbulk-memory: copies and
# fills become memory.copy/memory.fill instead of calls to a missing memcpy;
# --no-entry: a library, not a program; 64 KiB of stack is plenty and keeps
# instantiation cheap (docs/abi.md).
"${CC:-clang}" --target=wasm32 -nostdlib -O2 -mbulk-memory \
    -I "$here/../include" \
    -Wl,--no-entry -Wl,-z,stack-size=65536 -Wl,--strip-debug \
    -o "$out" "$here/shout.c"
