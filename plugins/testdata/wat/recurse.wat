;; recurse.wat: handle_request recurses without end, keeping 8 values live across each call.
;; Without the stack guard wazero grew its stack to ~400 MB of the edge's memory before the
;; call failed, late (the watchdog cannot interrupt a guest between two stack growths).
(module
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func $deeper (param $n i32) (result i32)
    (i64.load (i32.const 0)) (i64.load (i32.const 8)) (i64.load (i32.const 16)) (i64.load (i32.const 24))
    (i64.load (i32.const 32)) (i64.load (i32.const 40)) (i64.load (i32.const 48)) (i64.load (i32.const 56))
    (drop (call $deeper (i32.add (local.get $n) (i32.const 1))))
    (drop) (drop) (drop) (drop) (drop) (drop) (drop) (drop)
    (local.get $n))
  (func (export "handle_request") (result i32)
    (call $deeper (i32.const 0))))
