;; reader.wat: a minimal guest that reads one header and one request field before allowing
;; (the benchmark's "typical small WAT policy").
(module
  (import "policy" "get_path" (func $get_path (param i32 i32) (result i32)))
  (import "policy" "get_header" (func $get_header (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "x-api-key")
  (func (export "policy_abi_version") (result i32) (i32.const 1))
  (func (export "handle_request") (result i32)
    (drop (call $get_path (i32.const 1024) (i32.const 1024)))
    (if (i32.lt_s (call $get_header (i32.const 0) (i32.const 9) (i32.const 2048) (i32.const 1024)) (i32.const 0))
      (then (return (i32.const 0))))
    (i32.const 0)))
