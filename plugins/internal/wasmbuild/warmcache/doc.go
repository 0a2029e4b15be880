// Package warmcache holds TestWarm, which fills a wazero compilation cache for -race test
// runs (see warm_test.go and wasmbuild.Precompile).
package warmcache
