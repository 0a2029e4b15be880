;; bad_version.wat: claims ABI version 2.
(module
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 2))
  (func (export "handle_request") (result i32) (i32.const 0)))
