;; init_loop.wat: _initialize never returns; instance creation must time out.
(module
  (memory (export "memory") 1)
  (func (export "_initialize") (loop $l (br $l)))
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32) (i32.const 0)))
