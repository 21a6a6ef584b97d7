;; The guest of the `guest_output` fuzz target. Its shape never changes (it is
;; compiled once); everything it hands the host comes from the fuzz input.
;;
;; The host writes the encoded context into the input buffer; the context's
;; request body ends with a control block of 13 little-endian u32 words, and
;; the context's encoding ends with the default response (`12 00`), so the
;; block lies at `input + len - 2 - 52`:
;;
;;   0 flags         1 grow pages     2 next ptr       3 next len
;;   4 next out ptr  5 next out cap   6 next_result ptr 7 next_result cap
;;   8 panic ptr     9 panic len     10 next resize answer
;;  11 run ptr      12 run len
;;
;; flags: 1 memory.grow, 2 call next, 4 call next_result, 8 panic and trap,
;; 16 spin until the CPU budget runs out, 32 answer with what next or
;; next_result wrote, 64 pointers relative to the input buffer.
(module
  (import "env" "next" (func $next (param i32 i32 i32 i32) (result i32)))
  (import "env" "next_result" (func $next_result (param i32 i32) (result i32)))
  (import "env" "panic" (func $panic (param i32 i32)))
  (memory (export "memory") 1)
  ;; RunResult { context: Context::default() }, for seeds to point at.
  (data (i32.const 8) "\0a\04\0a\00\12\00")
  ;; Where this guest's input buffer is, and what `resize` answers next.
  (global $input (mut i32) (i32.const 1024))
  (global $resize_answer (mut i32) (i32.const 1024))

  (func (export "scale_abi_version") (result i32) (i32.const 1))

  (func (export "resize") (param i32) (result i32)
    (global.set $input (global.get $resize_answer))
    (global.get $input))

  ;; Word `i` of the control block at `c`.
  (func $word (param $c i32) (param $i i32) (result i32)
    (i32.load (i32.add (local.get $c) (i32.shl (local.get $i) (i32.const 2)))))

  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))

  (func (export "run") (param $len i32) (result i64)
    (local $c i32) (local $flags i32) (local $base i32) (local $out i32) (local $n i32)
    (local.set $c (i32.sub (i32.add (global.get $input) (local.get $len)) (i32.const 54)))
    (local.set $flags (call $word (local.get $c) (i32.const 0)))
    (if (i32.and (local.get $flags) (i32.const 64))
      (then (local.set $base (global.get $input))))
    (global.set $resize_answer (call $word (local.get $c) (i32.const 10)))
    (if (i32.and (local.get $flags) (i32.const 1))
      (then (drop (memory.grow (call $word (local.get $c) (i32.const 1))))))
    (if (i32.and (local.get $flags) (i32.const 2))
      (then
        (local.set $out (i32.add (local.get $base) (call $word (local.get $c) (i32.const 4))))
        (local.set $n
          (call $next
            (i32.add (local.get $base) (call $word (local.get $c) (i32.const 2)))
            (call $word (local.get $c) (i32.const 3))
            (local.get $out)
            (call $word (local.get $c) (i32.const 5))))))
    (if (i32.and (local.get $flags) (i32.const 4))
      (then
        (local.set $out (i32.add (local.get $base) (call $word (local.get $c) (i32.const 6))))
        (local.set $n (call $next_result (local.get $out) (call $word (local.get $c) (i32.const 7))))))
    (if (i32.and (local.get $flags) (i32.const 8))
      (then
        (call $panic
          (i32.add (local.get $base) (call $word (local.get $c) (i32.const 8)))
          (call $word (local.get $c) (i32.const 9)))
        (unreachable)))
    (if (i32.and (local.get $flags) (i32.const 16))
      (then (loop $spin (br $spin))))
    (if (i32.and (local.get $flags) (i32.const 32))
      (then (return (call $pack (local.get $out) (local.get $n)))))
    (call $pack
      (i32.add (local.get $base) (call $word (local.get $c) (i32.const 11)))
      (call $word (local.get $c) (i32.const 12))))
)
