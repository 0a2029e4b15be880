;; big_memory.wat: declares 512 pages (32 MiB) of initial memory, above the default cap.
(module
  (memory (export "memory") 512)
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
