;; start_loop.wat: a start section (run by instantiation itself, before any
;; export) that never returns; instance creation must time out.
(module
  (memory (export "memory") 1)
  (func $start (loop $l (br $l)))
  (start $start)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
