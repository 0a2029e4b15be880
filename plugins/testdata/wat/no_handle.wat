;; no_handle.wat: lacks the handle_request export.
(module
  (memory (export "memory") 1)
  (func (export "policy_abi_version") (result i32) (i32.const 1)))
