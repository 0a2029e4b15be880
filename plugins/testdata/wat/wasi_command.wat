;; wasi_command.wat: a WASI command (exports _start, no _initialize), as a Go
;; guest built without -buildmode=c-shared is; otherwise a valid guest.
(module
  (memory (export "memory") 1)
  (func (export "_start"))
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
