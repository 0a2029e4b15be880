// Command rawgo is a Go guest without the SDK: it measures the fixed cost of a call into a Go
// c-shared module (benchmarks only).
package main

//go:wasmimport policy get_config_id
func getConfigID() int64

//go:wasmexport policy_abi_version
func version() int32 { return 1 }

//go:wasmexport handle_request
func handle() int32 { return 0 }

func main() {}
