;; import_memory.wat: imports its memory instead of defining it.
(module
  (import "policy" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
