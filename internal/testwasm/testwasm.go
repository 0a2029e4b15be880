// Package testwasm holds small hand-assembled Wasm guests for tests, where
// a module's bytes must vary with a parameter (a .wat fixture cannot).
package testwasm

import (
	"encoding/hex"
	"fmt"
)

// Respond is a guest whose handle_request answers RESPOND with status and no
// body:
//
//	(module
//	  (import "policy" "respond" (func $respond (param i32 i32 i32)))
//	  (memory (export "memory") 1)
//	  (func (export "policy_abi_version") (result i32) (i32.const 1))
//	  (func (export "handle_request") (result i32)
//	    (call $respond (i32.const STATUS) (i32.const 0) (i32.const 0))
//	    (i32.const 1)))
//
// STATUS is the two-byte signed LEB128 of the i32.const, which holds any
// status from 64 to 8191; Respond panics outside that range.
func Respond(status int) []byte {
	if status < 64 || status >= 8192 {
		panic(fmt.Sprintf("testwasm: status %d outside 64-8191", status))
	}
	b, err := hex.DecodeString("0061736d01000000010b0260037f7f7f006000017f02120106706f6c69637907726573706f6e6400000303020101" +
		"0503010001073003066d656d6f7279020012706f6c6963795f6162695f76657273696f6e00010e68616e646c655f7265717565737400020a" +
		"1402040041010b0d0041" + fmt.Sprintf("%02x%02x", byte(status&0x7f|0x80), byte(status>>7)) + "41004100100041010b")
	if err != nil {
		panic(err)
	}
	return b
}
