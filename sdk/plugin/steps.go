package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/privateconnect/pc/sdk/plugin/internal/hostapi"
)

// MaxSteps is the most steps one call of a HandleSteps module runs.
const MaxSteps = 16

// StepTag starts what a HandleSteps module passes to set_error when a step answers RESPOND
// or ERROR: "step <index>", then ": <reason>" for an ERROR. A host that runs such a module for
// a run of attachments reads it to credit the step's plugin with the decision.
const StepTag = "step "

// HandleSteps registers a handler that runs several policies of one module in a single call,
// as consecutive attachments of a chain would run: pcd's edge bundles its built-in plugins this
// way, so a share's built-in policies share one module (one compiled module and one pool of
// instances on the edge instead of one per policy) and cost one Wasm call. The attachment's
// config is
//
//	{"steps": [{"policy": "<name in policies>", "config": {...}}, ...]}
//
// (at most MaxSteps). Each step sees its own config (Request.Config, ConfigID and ParseConfig
// work as in a module of its own); header edits accumulate; the first step that answers
// RESPOND or ERROR ends the call, and the module reports which one through set_error (see
// StepTag). validators check each step's config (a policy without one accepts any JSON).
func HandleSteps(policies map[string]Handler, validators map[string]ConfigValidator) {
	s := &stepper{policies: policies, validators: validators}
	Handle(s.handle)
	ValidateConfig(s.validate)
}

type stepper struct {
	policies   map[string]Handler
	validators map[string]ConfigValidator

	mu      sync.Mutex // one call at a time uses the scratch (a Wasm instance has one thread)
	scratch [MaxSteps]struct {
		host stepHost
		req  Request
	}
}

type step struct {
	name   string
	handle Handler
	config []byte
	id     uint64     // the step's ConfigID (a hash of its config)
	parsed parsedSlot // the step's ParseConfig result, kept with the parsed steps
}

// parsedSlot holds one step's parsed config (see ParseConfig).
type parsedSlot struct {
	e   cacheEntry
	set bool
}

type stepsConfig struct {
	Steps []struct {
		Policy string          `json:"policy"`
		Config json.RawMessage `json:"config"`
	} `json:"steps"`
}

func (s *stepper) parse(b []byte) ([]step, error) {
	cfg, err := DecodeJSON[*stepsConfig](b)
	if err != nil {
		return nil, err
	}
	if len(cfg.Steps) == 0 || len(cfg.Steps) > MaxSteps {
		return nil, fmt.Errorf("steps: between 1 and %d steps, got %d", MaxSteps, len(cfg.Steps))
	}
	steps := make([]step, len(cfg.Steps))
	for i, st := range cfg.Steps {
		h, ok := s.policies[st.Policy]
		if !ok {
			return nil, fmt.Errorf("steps[%d]: unknown policy %q", i, st.Policy)
		}
		c := []byte(st.Config)
		if len(c) == 0 || string(c) == "null" {
			c = []byte("{}")
		}
		steps[i] = step{name: st.Policy, handle: h, config: c, id: fnv64(c)}
	}
	return steps, nil
}

func (s *stepper) validate(b []byte) error {
	steps, err := s.parse(b)
	if err != nil {
		return err
	}
	for i, st := range steps {
		if v := s.validators[st.name]; v != nil {
			if err := v(st.config); err != nil {
				return fmt.Errorf("steps[%d] (%s): %w", i, st.name, err)
			}
		}
	}
	return nil
}

func (s *stepper) handle(r *Request) Result {
	steps, err := ParseConfig(r, s.parse)
	if err != nil {
		return Error(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range steps {
		sc := &s.scratch[i]
		sc.host = stepHost{Host: r.h, config: steps[i].config, id: steps[i].id, slot: &steps[i].parsed}
		sc.req.h = &sc.host
		res := runStep(steps[i].handle, &sc.req)
		switch res.code {
		case decisionAllow:
			for _, kv := range res.headers {
				r.h.SetResponseHeader(kv[0], kv[1])
			}
		case decisionRespond:
			r.h.SetError(StepTag + strconv.Itoa(i))
			return res
		default:
			res.err = StepTag + strconv.Itoa(i) + ": " + res.err
			return res
		}
	}
	return Allow()
}

// runStep calls one step, turning a panic into that step's ERROR.
func runStep(h Handler, r *Request) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Error(errors.New(fmt.Sprint("plugin panic: ", p)))
		}
	}()
	return h(r)
}

// stepHost is the host as one step sees it: its own config, and a slot for its parsed config
// in place of the config-id cache (the steps of one call would evict each other from it).
type stepHost struct {
	hostapi.Host
	config []byte
	id     uint64
	slot   *parsedSlot
}

func (h *stepHost) AppendField(dst []byte, f hostapi.Field) ([]byte, bool) {
	if f == hostapi.FieldConfig {
		return append(dst, h.config...), true
	}
	return h.Host.AppendField(dst, f)
}

// ConfigID of a step is not the host's (that covers every step): ParseConfig reads a step's
// parsed config from its slot instead, and plugins that key their own caches by ConfigID get
// an id derived from the step config's bytes, computed once when the steps are parsed.
func (h *stepHost) ConfigID() uint64 { return h.id }

// fnv64 is FNV-1a over b.
func fnv64(b []byte) uint64 {
	x := uint64(14695981039346656037)
	for _, c := range b {
		x ^= uint64(c)
		x *= 1099511628211
	}
	return x
}
