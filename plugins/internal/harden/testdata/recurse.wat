;; recurse.wat: recursion of every shape, for the stack guard's tests. Each function stores its
;; argument at address 0 on entry, so a test can read how deep a stopped call got.
(module
  (type $t (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) $down $indirect)
  (memory (export "memory") 1)

  ;; down n recurses to depth n and returns n. It leaves through return, through a br and a
  ;; br_table to the function's label, and by falling off its end, by turns.
  (func $down (export "down") (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $n))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
    (if (i32.eq (i32.rem_u (local.get $n) (i32.const 4)) (i32.const 1))
      (then (br 1 (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))))
    (if (i32.eq (i32.rem_u (local.get $n) (i32.const 4)) (i32.const 2))
      (then (br_table 1 1 (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1))
                          (i32.const 1))))
    (if (i32.eq (i32.rem_u (local.get $n) (i32.const 4)) (i32.const 3))
      (then (return (i32.add (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 0))
                             (i32.const 1)))))
    (i32.add (call $down (i32.sub (local.get $n) (i32.const 1))) (i32.const 1)))

  ;; forever never stops recursing.
  (func $forever (export "forever") (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $n))
    (call $forever (i32.add (local.get $n) (i32.const 1))))

  ;; indirect recurses through the table.
  (func $indirect (export "indirect") (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $n))
    (call_indirect (type $t) (i32.add (local.get $n) (i32.const 1)) (i32.const 1)))

  ;; ping and pong recurse through each other.
  (func $ping (export "ping") (param $n i32) (result i32)
    (i32.store (i32.const 0) (local.get $n))
    (call $pong (i32.add (local.get $n) (i32.const 1))))
  (func $pong (param $n i32) (result i32)
    (call $ping (local.get $n)))

  ;; pair n returns (n, 2n) from depth n: a block with two results.
  (func $pair (export "pair") (param $n i32) (result i32 i32)
    (local $a i32) (local $b i32)
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0) (i32.const 0))))
    (call $pair (i32.sub (local.get $n) (i32.const 1)))
    (local.set $b)
    (local.set $a)
    (i32.add (local.get $a) (i32.const 1))
    (i32.add (local.get $b) (i32.const 2)))

  ;; leaf makes no call.
  (func $leaf (export "leaf") (param $n i32) (result i32)
    (i32.mul (local.get $n) (i32.const 2))))
