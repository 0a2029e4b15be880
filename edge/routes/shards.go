package routes

import (
	"hash/maphash"
	"iter"
)

// nShards is how many maps each large index of a Table is split into, by a
// hash of the key. Apply copies only the shards its changes touch, so one
// change to a table of 100,000 shares copies about 400 entries instead of
// 100,000: what a burst of API changes costs every edge, and what it costs
// the request path sharing the edge's CPU.
const nShards = 256

// shardMap is an index split into nShards maps. A table's shardMap is
// never modified once the table is published; a new table copies the array
// (nShards pointers) and replaces the maps it changes (see cow).
type shardMap[K comparable, V any] [nShards]map[K]V

func (s *shardMap[K, V]) get(i uint8, k K) (V, bool) {
	v, ok := s[i][k]
	return v, ok
}

func (s *shardMap[K, V]) len() int {
	n := 0
	for _, m := range s {
		n += len(m)
	}
	return n
}

// all yields every entry, shard by shard.
func (s *shardMap[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, m := range s {
			for k, v := range m {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// cow writes to the shardMap of a table under construction, copying each
// shard the first time it is written, so the table it was copied from
// (which shares the other shards) never changes.
type cow[K comparable, V any] struct {
	m   *shardMap[K, V]
	own [nShards]bool
}

func (c *cow[K, V]) put(i uint8, k K, v V) {
	c.mine(i)
	c.m[i][k] = v
}

func (c *cow[K, V]) del(i uint8, k K) {
	if _, ok := c.m[i][k]; !ok {
		return
	}
	c.mine(i)
	delete(c.m[i], k)
}

func (c *cow[K, V]) mine(i uint8) {
	if c.own[i] {
		return
	}
	c.own[i] = true
	m := make(map[K]V, len(c.m[i])+1)
	for k, v := range c.m[i] {
		m[k] = v
	}
	c.m[i] = m
}

// seed hashes string keys to shards; tables are only ever shared within
// one process, so one seed per process is enough.
var seed = maphash.MakeSeed()

// strShard is the shard of a string key (ids, subdomains).
func strShard(s string) uint8 { return uint8(maphash.String(seed, s)) }

// hashShard is the shard of a token hash: its first byte (SHA-256 output
// is uniform already).
func hashShard(h *[32]byte) uint8 { return h[0] }
