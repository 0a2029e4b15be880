;; echo.wat: the ABI conformance guest. Its config is a JSON string whose first character
;; selects what handle_request does (see plugins/conformance_test.go). It imports every host
;; function of ABI v1 plus wasi fd_write.
(module
  (import "policy" "get_config" (func $get_config (param i32 i32) (result i32)))
  (import "policy" "get_config_id" (func $get_config_id (result i64)))
  (import "policy" "get_method" (func $get_method (param i32 i32) (result i32)))
  (import "policy" "get_path" (func $get_path (param i32 i32) (result i32)))
  (import "policy" "get_query" (func $get_query (param i32 i32) (result i32)))
  (import "policy" "get_host" (func $get_host (param i32 i32) (result i32)))
  (import "policy" "get_client_ip" (func $get_client_ip (param i32 i32) (result i32)))
  (import "policy" "get_header" (func $get_header (param i32 i32 i32 i32) (result i32)))
  (import "policy" "get_share_id" (func $get_share_id (param i32 i32) (result i32)))
  (import "policy" "now_unix_ms" (func $now_unix_ms (result i64)))
  (import "policy" "set_request_header" (func $set_request_header (param i32 i32 i32 i32)))
  (import "policy" "remove_request_header" (func $remove_request_header (param i32 i32)))
  (import "policy" "set_response_header" (func $set_response_header (param i32 i32 i32 i32)))
  (import "policy" "respond" (func $respond (param i32 i32 i32)))
  (import "policy" "rate_limit" (func $rate_limit (param i32 i32 i32 i32) (result i32)))
  (import "policy" "hmac_sha256" (func $hmac_sha256 (param i32 i32 i32 i32 i32)))
  (import "policy" "verify_signature" (func $verify_signature (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "policy" "set_error" (func $set_error (param i32 i32)))
  (import "policy" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; constants
  (data (i32.const 1024) "X-A")
  (data (i32.const 1040) "1")
  (data (i32.const 1056) "X-Remove")
  (data (i32.const 1072) "X-R")
  (data (i32.const 1088) "2")
  (data (i32.const 1104) "teapot")
  (data (i32.const 1120) "boom")
  (data (i32.const 1136) "missing")
  (data (i32.const 1152) "key")
  (data (i32.const 1168) "hello from wat")
  (data (i32.const 1200) "X-Alg")
  (data (i32.const 1216) "X-Key")
  (data (i32.const 1232) "X-Sig")
  (data (i32.const 1248) "zzzz")
  (data (i32.const 1264) "stdout line\n")
  (data (i32.const 1280) "Bad Name")
  (data (i32.const 1296) "ok")
  (data (i32.const 1312) "Content-Length")

  ;; regions
  ;;   0      config (1024)
  ;;   2048   probe sentinel
  ;;   3000   iovec, 3008 nwritten
  ;;   4000   small results
  ;;   4096   header name (1024)
  ;;   8192   value / path (4096)
  ;;   12288  alg (256)
  ;;   12544  key (8192)
  ;;   20736  sig (1024)

  (func (export "policy_abi_version") (result i32) (i32.const 1))

  ;; respond 200 with the n bytes at 8192, or 404 "missing" when n is -1.
  (func $echo (param $n i32) (result i32)
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then
        (call $respond (i32.const 404) (i32.const 1136) (i32.const 7))
        (return (i32.const 1))))
    (call $respond (i32.const 200) (i32.const 8192) (local.get $n))
    (i32.const 1))

  ;; respond 200 with "0" or "1"
  (func $bool (param $b i32) (result i32)
    (i32.store8 (i32.const 4000) (i32.add (i32.const 48) (local.get $b)))
    (call $respond (i32.const 200) (i32.const 4000) (i32.const 1))
    (i32.const 1))

  (func (export "handle_request") (result i32)
    (local $op i32) (local $n i32) (local $a i32) (local $k i32) (local $s i32) (local $i i32)
    (drop (call $get_config (i32.const 0) (i32.const 1024)))
    (local.set $op (i32.load8_u (i32.const 1)))

    (if (i32.eq (local.get $op) (i32.const 109)) ;; m
      (then (return (call $echo (call $get_method (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 112)) ;; p
      (then (return (call $echo (call $get_path (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 113)) ;; q
      (then (return (call $echo (call $get_query (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 104)) ;; h
      (then (return (call $echo (call $get_host (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 105)) ;; i
      (then (return (call $echo (call $get_client_ip (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 115)) ;; s
      (then (return (call $echo (call $get_share_id (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 99)) ;; c
      (then (return (call $echo (call $get_config (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 72)) ;; H: header named by the query
      (then
        (local.set $n (call $get_query (i32.const 4096) (i32.const 1024)))
        (return (call $echo (call $get_header (i32.const 4096) (local.get $n) (i32.const 8192) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 73)) ;; I: config id, 8 bytes little-endian
      (then
        (i64.store (i32.const 8192) (call $get_config_id))
        (return (call $echo (i32.const 8)))))
    (if (i32.eq (local.get $op) (i32.const 110)) ;; n: now_unix_ms
      (then
        (i64.store (i32.const 8192) (call $now_unix_ms))
        (return (call $echo (i32.const 8)))))
    (if (i32.eq (local.get $op) (i32.const 65)) ;; A: allow with header edits
      (then
        (call $set_request_header (i32.const 1024) (i32.const 3) (i32.const 1040) (i32.const 1))
        (call $remove_request_header (i32.const 1056) (i32.const 8))
        (call $set_response_header (i32.const 1072) (i32.const 3) (i32.const 1088) (i32.const 1))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 82)) ;; R: respond 418 teapot + response header
      (then
        (call $set_response_header (i32.const 1072) (i32.const 3) (i32.const 1088) (i32.const 1))
        (call $respond (i32.const 418) (i32.const 1104) (i32.const 6))
        (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 69)) ;; E: error with reason
      (then
        (call $set_error (i32.const 1120) (i32.const 4))
        (return (i32.const 2))))
    (if (i32.eq (local.get $op) (i32.const 71)) ;; G: garbage decision code
      (then (return (i32.const -7))))
    (if (i32.eq (local.get $op) (i32.const 78)) ;; N: RESPOND without respond
      (then (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 76)) ;; L: rate_limit(path, 3, 60s)
      (then
        (local.set $n (call $get_path (i32.const 8192) (i32.const 4096)))
        (return (call $bool (call $rate_limit (i32.const 8192) (local.get $n) (i32.const 3) (i32.const 60000))))))
    (if (i32.eq (local.get $op) (i32.const 77)) ;; M: hmac_sha256("key", path)
      (then
        (local.set $n (call $get_path (i32.const 8192) (i32.const 4096)))
        (call $hmac_sha256 (i32.const 1152) (i32.const 3) (i32.const 8192) (local.get $n) (i32.const 4000))
        (call $respond (i32.const 200) (i32.const 4000) (i32.const 32))
        (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 86)) ;; V: verify_signature(X-Alg, X-Key, path, X-Sig)
      (then
        (local.set $n (call $get_path (i32.const 8192) (i32.const 4096)))
        (local.set $a (call $get_header (i32.const 1200) (i32.const 5) (i32.const 12288) (i32.const 256)))
        (local.set $k (call $get_header (i32.const 1216) (i32.const 5) (i32.const 12544) (i32.const 8192)))
        (local.set $s (call $get_header (i32.const 1232) (i32.const 5) (i32.const 20736) (i32.const 1024)))
        (return (call $bool (call $verify_signature
          (i32.const 12288) (local.get $a) (i32.const 12544) (local.get $k)
          (i32.const 8192) (local.get $n) (i32.const 20736) (local.get $s))))))
    (if (i32.eq (local.get $op) (i32.const 108)) ;; l: log + stdout, allow
      (then
        (call $log (i32.const 2) (i32.const 1168) (i32.const 14))
        (i32.store (i32.const 3000) (i32.const 1264))
        (i32.store (i32.const 3004) (i32.const 12))
        (drop (call $fd_write (i32.const 1) (i32.const 3000) (i32.const 1) (i32.const 3008)))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 80)) ;; P: size probing writes nothing
      (then
        (i32.store (i32.const 2048) (i32.load (i32.const 1248)))
        (local.set $n (call $get_path (i32.const 2048) (i32.const 0)))
        (if (i32.gt_s (local.get $n) (i32.const 0))
          (then (drop (call $get_path (i32.const 2048) (i32.sub (local.get $n) (i32.const 1))))))
        (call $respond (i32.const 200) (i32.const 2048) (i32.const 4))
        (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 88)) ;; X: infinite loop
      (then (loop $spin (br $spin))))
    (if (i32.eq (local.get $op) (i32.const 84)) ;; T: trap
      (then unreachable))
    (if (i32.eq (local.get $op) (i32.const 79)) ;; O: getter into an out-of-bounds buffer
      (then (return (call $echo (call $get_path (i32.const -256) (i32.const 4096))))))
    (if (i32.eq (local.get $op) (i32.const 111)) ;; o: header edit from an out-of-bounds pointer
      (then
        (call $set_request_header (i32.const 1024) (i32.const 3) (i32.const 131000) (i32.const 1000))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 87)) ;; W: grow memory until refused, then trap
      (then
        (loop $grow
          (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        unreachable))
    (if (i32.eq (local.get $op) (i32.const 66)) ;; B: invalid header name
      (then
        (call $set_request_header (i32.const 1280) (i32.const 8) (i32.const 1040) (i32.const 1))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 70)) ;; F: forbidden header
      (then
        (call $set_request_header (i32.const 1312) (i32.const 14) (i32.const 1040) (i32.const 1))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 83)) ;; S: status out of range
      (then
        (call $respond (i32.const 700) (i32.const 0) (i32.const 0))
        (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 90)) ;; Z: body too large
      (then
        (call $respond (i32.const 200) (i32.const 0) (i32.const 70000))
        (return (i32.const 1))))
    (if (i32.eq (local.get $op) (i32.const 68)) ;; D: too many edits
      (then
        (loop $edits
          (call $set_response_header (i32.const 1072) (i32.const 3) (i32.const 1088) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $edits (i32.lt_u (local.get $i) (i32.const 100))))
        (return (i32.const 0))))
    (if (i32.eq (local.get $op) (i32.const 107)) ;; k: rate_limit with an empty key (violation)
      (then (return (call $bool (call $rate_limit (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 1000))))))
    (i32.const 0))

  ;; validate_config: the config "\"bad\"" (first char b) is invalid.
  (func (export "validate_config") (result i32)
    (drop (call $get_config (i32.const 0) (i32.const 1024)))
    (if (i32.eq (i32.load8_u (i32.const 1)) (i32.const 98))
      (then
        (call $set_error (i32.const 1120) (i32.const 4))
        (return (i32.const 1))))
    (i32.const 0))
)
