;; counter: a ledge function written by hand against the ledge_v1 ABI
;; (docs/abi.md), without the SDK, to show that the ABI is language-neutral.
;;
;; Each invocation adds one to a counter kept in a global, logs the payload's
;; length at info level ("payload bytes: 5") and responds with the count in
;; decimal ASCII ("3"). The global survives warm invocations and starts again
;; at 0 on a fresh instance.
(module
  (import "ledge_v1" "log" (func $log (param i32 i32 i32)))
  (import "ledge_v1" "respond" (func $respond (param i32 i32) (result i32)))

  ;; Memory map: 0..15 the log prefix, 15..35 the log line's digits,
  ;; 64..84 the response digits, 1024.. the payload (grown on demand).
  (memory (export "memory") 1)
  (data (i32.const 0) "payload bytes: ")
  (global $count (mut i64) (i64.const 0))

  ;; Writes $n in decimal at $dst (at most 20 digits); returns how many.
  (func $utoa (param $n i64) (param $dst i32) (result i32)
    (local $len i32) (local $rest i64) (local $p i32)
    ;; Count the digits first so they can be written last one first.
    (local.set $len (i32.const 1))
    (local.set $rest (local.get $n))
    (block $counted
      (loop $more
        (br_if $counted (i64.lt_u (local.get $rest) (i64.const 10)))
        (local.set $rest (i64.div_u (local.get $rest) (i64.const 10)))
        (local.set $len (i32.add (local.get $len) (i32.const 1)))
        (br $more)))
    (local.set $p (i32.add (local.get $dst) (local.get $len)))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48)
          (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (local.get $len))

  ;; The payload always goes at 1024; grow the memory until $len bytes fit.
  ;; Pages are counted in i64 so that a huge $len cannot wrap around, and
  ;; 66559 is 1024 + 65535 (round up to a whole 64 KiB page).
  (func (export "ledge_alloc") (param $len i32) (result i32)
    (local $pages i64)
    (local.set $pages
      (i64.shr_u
        (i64.add (i64.extend_i32_u (local.get $len)) (i64.const 66559))
        (i64.const 16)))
    (if (i64.gt_u (local.get $pages) (i64.extend_i32_u (memory.size)))
      (then
        (if (i32.eq
              (memory.grow (i32.sub (i32.wrap_i64 (local.get $pages)) (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (i32.const 1024))

  ;; One invocation. The payload itself is never read: only its length.
  (func (export "ledge_handle") (param $ptr i32) (param $len i32) (result i32)
    (global.set $count (i64.add (global.get $count) (i64.const 1)))
    (call $log (i32.const 3) (i32.const 0)
      (i32.add (i32.const 15)
        (call $utoa (i64.extend_i32_u (local.get $len)) (i32.const 15))))
    ;; A count of at most 20 bytes cannot exceed max_payload: ignore the code.
    (drop (call $respond (i32.const 64)
      (call $utoa (global.get $count) (i32.const 64))))
    (i32.const 0))
)
