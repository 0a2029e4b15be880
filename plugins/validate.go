package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/privateconnect/pc/plugins/abi"
)

// Info is what validation learns about a module.
type Info struct {
	SHA256            string   // hex
	SizeBytes         int      // module size
	Exports           []string // exported functions and memories, sorted
	HasValidateConfig bool     // exports validate_config
}

// checkModule enforces the ABI's import and export rules on a compiled module.
func checkModule(cm wazero.CompiledModule) (Info, error) {
	bad := func(format string, args ...any) (Info, error) {
		return Info{}, fmt.Errorf("%w: %s", ErrInvalidModule, fmt.Sprintf(format, args...))
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case abi.ModuleName:
			want, ok := abi.LookupImport(name)
			if !ok {
				return bad("import %s.%s is not part of ABI v%d", mod, name, abi.Version)
			}
			if !sameSig(f, want) {
				return bad("import %s.%s has signature %s, want %s", mod, name, sigString(f.ParamTypes(), f.ResultTypes()),
					sigString(valueTypes(want.Params), valueTypes(want.Results)))
			}
		case abi.WASIModuleName:
			if !abi.WASIAllowed(name) {
				return bad("import %s.%s is not allowed (no file system, environment or sockets)", mod, name)
			}
		default:
			return bad("import %s.%s: module %q is not allowed", mod, name, mod)
		}
	}
	if mems := cm.ImportedMemories(); len(mems) > 0 {
		mod, name, _ := mems[0].Import()
		return bad("imports memory %s.%s; the guest must define and export its own", mod, name)
	}
	var info Info
	if _, ok := cm.ExportedMemories()[abi.ExportMemory]; !ok {
		return bad("no %q memory export", abi.ExportMemory)
	}
	fns := cm.ExportedFunctions()
	if _, cmd := fns["_start"]; cmd {
		if _, reactor := fns[abi.ExportInitialize]; !reactor {
			// A Go guest built without -buildmode=c-shared: its runtime would
			// never be initialised, and its first export call traps.
			return bad("exports _start: a WASI command, not a reactor; build Go guests with -buildmode=c-shared (sdk/plugin)")
		}
	}
	for _, name := range abi.RequiredExports {
		if _, ok := fns[name]; !ok {
			return bad("missing export %s", name)
		}
	}
	for name, def := range fns {
		info.Exports = append(info.Exports, name)
		want, ok := abi.LookupExport(name)
		if !ok {
			continue
		}
		if !sameSig(def, want) {
			return bad("export %s has signature %s, want %s", name, sigString(def.ParamTypes(), def.ResultTypes()),
				sigString(valueTypes(want.Params), valueTypes(want.Results)))
		}
	}
	for name := range cm.ExportedMemories() {
		info.Exports = append(info.Exports, name)
	}
	sort.Strings(info.Exports)
	_, info.HasValidateConfig = fns[abi.ExportValidateConfig]
	return info, nil
}

func sameSig(f api.FunctionDefinition, want abi.Func) bool {
	return slices.Equal(f.ParamTypes(), valueTypes(want.Params)) && slices.Equal(f.ResultTypes(), valueTypes(want.Results))
}

func sigString(params, results []api.ValueType) string {
	s := "("
	for i, p := range params {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(p)
	}
	s += ") -> ("
	for i, r := range results {
		if i > 0 {
			s += ", "
		}
		s += api.ValueTypeName(r)
	}
	return s + ")"
}

// Validate checks a module as the control plane does at upload: it compiles, imports only what
// ABI v1 allows, exports what it requires, instantiates under the default limits, runs
// _initialize (with config "{}") and returns 1 from policy_abi_version. validate_config is not
// run: plugins may legitimately require config fields. Validate compiles without a cache; a
// long-lived process should prefer [Host.Validate].
func Validate(ctx context.Context, wasm []byte) (Info, error) {
	h, err := NewHost(ctx, Config{PoolSize: 1})
	if err != nil {
		return Info{}, err
	}
	defer h.Close(context.Background())
	return h.Validate(ctx, wasm)
}

// Validate is the package-level [Validate] using this host's limits and compilation cache
// (so that a later Load of the same module is fast).
func (h *Host) Validate(ctx context.Context, wasm []byte) (Info, error) {
	if h.closed.Load() {
		return Info{}, ErrClosed
	}
	pl := &plugin{host: h, id: "validate", breaker: newBreaker(0, 0)}
	pl.guestLogs.init(10, 20)
	pl.failLogs.init(2, 5)
	p, info, err := h.newPool(ctx, pl, wasm, h.cfg.DefaultMemoryLimitBytes, 1, false)
	if err != nil {
		return Info{}, fmt.Errorf("plugins: validate: %w", err)
	}
	p.drain()
	sum := sha256.Sum256(wasm)
	info.SHA256 = hex.EncodeToString(sum[:])
	return info, nil
}

// ValidateConfig runs pluginID's validate_config on config, which must be a JSON document of
// at most 64 KiB. A plugin without validate_config accepts any JSON config. An invalid config
// gives an error wrapping [ErrInvalidConfig] whose message ends with the guest's set_error
// reason.
func (h *Host) ValidateConfig(ctx context.Context, pluginID string, config []byte) error {
	if len(config) > abi.MaxConfigLen {
		return ErrConfigTooLarge
	}
	if len(config) == 0 {
		config = emptyConfig
	}
	if !json.Valid(config) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidConfig)
	}
	pl := h.lookup(pluginID)
	if pl == nil {
		return &PluginError{PluginID: pluginID, Kind: ErrNotLoaded}
	}
	if !pl.info.HasValidateConfig {
		return nil
	}
	in, err := pl.pool.acquire()
	if err != nil {
		return &PluginError{PluginID: pluginID, Kind: err}
	}
	in.begin(emptyRequest, config, h.configID(pluginID, config))
	err = in.call(in.validate, int64(h.cfg.ValidateConfigTimeout), true)
	if err == ErrNoInstance {
		// No execution slot in time: the guest never ran; the instance is intact.
		pl.pool.release(in)
		return &PluginError{PluginID: pluginID, Kind: ErrNoInstance}
	}
	if err != nil {
		kind := in.classify(err)
		detail := describe(err, in)
		pl.pool.discard(in, true)
		return &PluginError{PluginID: pluginID, Kind: kind, Detail: detail}
	}
	code := int32(in.stack[0])
	reason := string(in.errMsg)
	pl.pool.release(in)
	if code != abi.ConfigValid {
		if reason == "" {
			reason = fmt.Sprintf("validate_config returned %d", code)
		}
		return fmt.Errorf("%w: %s", ErrInvalidConfig, reason)
	}
	return nil
}
