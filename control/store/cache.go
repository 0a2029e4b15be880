package store

import (
	"bytes"
	"encoding/json"
	"sync"
	"sync/atomic"
)

// Decoding JSON dominates the cost of hot list routes (GET /v1/services).
// serviceCache remembers decoded services by key together with the exact
// bytes they were decoded from: a hit needs the stored bytes to be equal, so
// the cache can never return a stale value, whatever store it is used with.
// Service has no slice or map fields, so handing out copies is safe.
var (
	serviceCache sync.Map // string(key) → *cachedService
	serviceCount atomic.Int64
)

const maxCachedServices = 200_000

type cachedService struct {
	raw []byte
	v   Service
}

func decodeService(k, v []byte, s *Service) error {
	if e, ok := serviceCache.Load(string(k)); ok {
		ce := e.(*cachedService)
		if bytes.Equal(ce.raw, v) {
			*s = ce.v
			return nil
		}
	}
	if err := json.Unmarshal(v, s); err != nil {
		return err
	}
	if serviceCount.Add(1) > maxCachedServices {
		serviceCache.Clear()
		serviceCount.Store(0)
	}
	serviceCache.Store(string(k), &cachedService{raw: bytes.Clone(v), v: *s})
	return nil
}

// decode decodes a record: services through the cache, access records
// from their binary form, everything else from JSON.
func decode[T any](k, v []byte, t *T) error {
	switch p := any(t).(type) {
	case *Service:
		return decodeService(k, v, p)
	case *AccessRecord:
		return decodeAccessRecord(k, v, p)
	}
	return json.Unmarshal(v, t)
}
