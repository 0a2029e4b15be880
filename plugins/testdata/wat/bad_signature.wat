;; bad_signature.wat: imports get_path with the wrong signature.
(module
  (import "policy" "get_path" (func $get_path (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
