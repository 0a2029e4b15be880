;; unknown_import.wat: imports a "policy" function that ABI v1 does not define.
(module
  (import "policy" "open_socket" (func $s (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
