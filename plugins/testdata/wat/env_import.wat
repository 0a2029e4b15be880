;; env_import.wat: imports from a module other than policy and wasi_snapshot_preview1.
(module
  (import "env" "abort" (func $abort (param i32)))
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
